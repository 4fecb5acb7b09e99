"""The plugins' part of the door, in front of FastAPI: WSGI mounts by path prefix, then routes on
(method, path regex); anything else goes on to FastAPI (healthz, the API, the dashboard).

A route's body is read here, capped before the handler sees it: chunked bodies are drained and refused (411),
one over the route's limit is drained and refused (413: a client still sending hears the answer instead of a
reset), a body that stalls past the idle timeout is 408. A mount's body reads time out alike (the client counts
as gone). Handlers run in a worker thread; their errors become
JSON `{"error": ...}`, here and nowhere else.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from a2wsgi import WSGIMiddleware
from loguru import logger
from starlette.concurrency import run_in_threadpool

from pushdock.errors import PushdockError, UsageError
from pushdock.httproutes import HttpError, Mount, Request, Response, Route, json_response, status_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pushdock.context import Context

    Scope = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_LIMIT = 64 * 1024 * 1024  # an oversized body is read and dropped up to this, so the client hears the answer
WSGI_THREADS = 32  # concurrent git-over-HTTP exchanges (each holds a thread while it streams)


class PluginRoutes:
    """An ASGI app: the plugins' mounts and routes, then `fallback` (FastAPI)."""

    def __init__(self, ctx: Context, items: list[Route | Mount], fallback: ASGIApp) -> None:
        self.ctx, self.fallback = ctx, fallback
        self.idle = ctx.settings.http_idle_timeout or None
        self.routes = [r for r in items if isinstance(r, Route)]
        # a2wsgi declares its own WSGI/ASGI TypedDicts, which the standard (wsgiref) and starlette types do not match
        self.mounts = [(m.prefix, WSGIMiddleware(m.app, workers=WSGI_THREADS))  # type: ignore[arg-type]
                       for m in items if isinstance(m, Mount)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.fallback(scope, receive, send)
        path = scope["path"]
        for prefix, app in self.mounts:
            if path.startswith(prefix):
                # The server has already de-chunked the body: a WSGI app must not see the header and de-chunk again.
                scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"transfer-encoding"]}
                return await app(scope, self._bounded(receive), send)  # type: ignore[arg-type]  # a2wsgi's types, as above
        allowed = False
        for r in self.routes:
            match = r.pattern.fullmatch(path)
            if match is None:
                continue
            if r.method != scope["method"]:
                allowed = True
                continue
            response = await self._handle(r, scope, receive, match.groupdict())
            return await _send(send, response)
        if allowed:
            return await _send(send, json_response(405, {"error": "method not allowed"}))
        return await self.fallback(scope, receive, send)

    def _bounded(self, receive: Receive) -> Receive:
        """`receive` with the idle timeout on every read: a body that stalls reads as the client gone, so a WSGI
        app's thread is freed (the old threaded server had a socket timeout on every read)."""
        idle = self.idle

        async def bounded() -> MutableMapping[str, Any]:
            try:
                return await asyncio.wait_for(receive(), idle)
            except TimeoutError:
                logger.debug("http body stalled: treated as a disconnect")
                return {"type": "http.disconnect"}

        return bounded

    async def _handle(self, r: Route, scope: Scope, receive: Receive, params: dict[str, str]) -> Response:
        try:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            body = await self._body(headers, receive, r.max_body)
            request = Request(scope["method"], scope["path"], headers, body, params)
            return await run_in_threadpool(r.handler, self.ctx, request)
        except HttpError as e:
            return json_response(e.status, {"error": str(e)})
        except TimeoutError:
            return json_response(408, {"error": "the request body stalled"})
        except PushdockError as e:
            return json_response(status_of(e), {"error": str(e)})
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            logger.exception("http handler crashed", path=scope["path"], error_id=error_id)
            return json_response(500, {"error": f"internal error {error_id}"})

    async def _body(self, headers: dict[str, str], receive: Receive, max_body: int) -> bytes:
        if "transfer-encoding" in headers:
            if headers["transfer-encoding"].strip().lower() == "chunked":
                await self._drain(receive, DRAIN_LIMIT)
            raise HttpError(411, "send the body with a Content-Length")
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise UsageError("bad Content-Length") from None
        if length < 0:
            raise UsageError("bad Content-Length")
        if length > max_body:
            await self._drain(receive, min(length, DRAIN_LIMIT))
            raise HttpError(413, f"request body over {max_body} bytes")
        chunks: list[bytes] = []
        more = length > 0
        while more:
            message = await asyncio.wait_for(receive(), self.idle)
            if message["type"] == "http.disconnect":
                raise HttpError(400, "the client went away")
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _drain(self, receive: Receive, limit: int) -> None:
        """Read and drop up to `limit` bytes of the body (bounded by the idle timeout per read)."""
        while limit > 0:
            try:
                message = await asyncio.wait_for(receive(), self.idle)
            except TimeoutError:
                return
            if message["type"] != "http.request":
                return
            limit -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return


async def _send(send: Send, response: Response) -> None:
    headers = [(k.lower().encode(), v.encode()) for k, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
