"""The HTTP server of `pushdock serve`: uvicorn in a background thread, on a socket bound before it starts.

Caps that hold for every connection: one silent from its start (or between requests) past
`PUSHDOCK_HTTP_IDLE_TIMEOUT` is closed (uvicorn only times out idle keep-alive connections: `_IdleH11` arms the
same timer when a connection opens); bodies of plugin routes are capped and time out per read (web/routes.py).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import TYPE_CHECKING

import uvicorn
from loguru import logger
from uvicorn.protocols.http.h11_impl import H11Protocol

from pushdock.errors import PushdockError

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.httproutes import Mount, Route
    from web.app import Health


class _IdleH11(H11Protocol):
    """uvicorn's h11 protocol, with the keep-alive timer armed from the first byte: a client that connects and
    says nothing is closed after the idle timeout instead of holding the connection for ever."""

    # uvicorn's own H11Protocol.connection_made narrows asyncio's BaseTransport the same way
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)


class HttpDoor:
    """pushdock's HTTP door; `routes` replaces the plugins' (tests hand in a webhook queue of their own)."""

    worker_modules = ("web.worker",)  # what serve's zygote imports for the API's workers (pushdock/zygote.py)

    def __init__(self, ctx: Context, *, health: Health | None = None,
                 routes: list[Route | Mount] | None = None) -> None:
        from web.app import make_app  # noqa: PLC0415 -- start-up: loads only when this path runs

        s = ctx.settings
        self.app = make_app(ctx, health=health, routes=routes)
        try:
            self.sock = socket.create_server((s.http_host, s.http_port), reuse_port=False, backlog=256)
        except OSError as e:
            raise PushdockError(f"cannot listen for http on {s.http_host}:{s.http_port}: {e.strerror or e}") from e
        config = uvicorn.Config(self.app, http=_IdleH11, lifespan="off", log_config=None, access_log=False,
                                # uvicorn types it int; it only reaches loop.call_later, which takes a float
                                timeout_keep_alive=s.http_idle_timeout or 3600,  # type: ignore[arg-type]
                                timeout_graceful_shutdown=3, server_header=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="http", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except Exception:
            logger.exception("http door stopped")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        self.thread.start()
        return self.address

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(5)
        self.sock.close()
