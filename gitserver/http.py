"""The HTTP door: a threaded WSGI server and a route table: `/healthz`, GitHub webhooks, git over HTTP.

Routes are data: `(method, path regex, handler, body limit)`; a handler takes the Context and a Request and
returns a Response. Errors become JSON `{"error": ...}` with a status code, here and nowhere else. Mounts
hand a path prefix to a raw WSGI app that streams (git over HTTP: gitserver/smarthttp.py).
"""

from __future__ import annotations

import re
import socketserver
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from loguru import logger

from gitserver.web import HttpError, Request, Response, json_response
from gitserver.webhook_deploy import DeployQueue
from gitserver.webhooks import MAX_BODY as WEBHOOK_MAX_BODY
from gitserver.webhooks import GithubWebhook
from pushdock.errors import Conflict, Forbidden, NotFound, PushdockError, UsageError, internal_error

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from pushdock.context import Context

MAX_BODY = 25 * 1024 * 1024  # GitHub's payload cap
DRAIN_LIMIT = 64 * 1024 * 1024  # an oversized body is read and dropped up to this, so the client hears the 413
STATUS_OF: tuple[tuple[type[PushdockError], int], ...] = (
    (UsageError, 400), (Forbidden, 403), (NotFound, 404), (Conflict, 409),
)
REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
           413: "Payload Too Large", 415: "Unsupported Media Type", 500: "Internal Server Error"}


Handler = Callable[["Context", Request], Response]
WSGIApp = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


@dataclass
class Router:
    """A WSGI app: mounts by path prefix first, then routes on (method, path regex); the first match wins."""

    ctx: Context
    routes: list[tuple[str, re.Pattern[str], Handler, int]] = field(default_factory=list)
    mounts: list[tuple[str, WSGIApp]] = field(default_factory=list)

    def add(self, method: str, pattern: str, handler: Handler, *, max_body: int = MAX_BODY) -> None:
        self.routes.append((method, re.compile(pattern), handler, max_body))

    def mount(self, prefix: str, app: WSGIApp) -> None:
        self.mounts.append((prefix, app))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        for prefix, app in self.mounts:
            if path.startswith(prefix):
                return app(environ, start_response)
        response = self._dispatch(environ)
        reason = REASONS.get(response.status, "")
        start_response(f"{response.status} {reason}".strip(), [*response.headers,
                                                               ("Content-Length", str(len(response.body)))])
        return [response.body]

    def _dispatch(self, environ: WSGIEnvironment) -> Response:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        allowed = False
        for route_method, pattern, handler, max_body in self.routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method != method:
                allowed = True
                continue
            try:
                return handler(self.ctx, _request(environ, method, path, match.groupdict(), max_body))
            except HttpError as e:
                return json_response(e.status, {"error": str(e)})
            except TimeoutError:  # the body stalled past PUSHDOCK_HTTP_IDLE_TIMEOUT
                return json_response(408, {"error": "the request body stalled"})
            except PushdockError as e:
                status = next((code for kind, code in STATUS_OF if isinstance(e, kind)), 500)
                return json_response(status, {"error": str(e)})
            except Exception:
                return json_response(500, {"error": internal_error("http handler crashed", path=path)})
        if allowed:
            return json_response(405, {"error": "method not allowed"})
        return json_response(404, {"error": "not found"})


def _request(environ: WSGIEnvironment, method: str, path: str, params: dict[str, str], max_body: int) -> Request:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if "transfer-encoding" in headers:
        if headers["transfer-encoding"].strip().lower() == "chunked":
            _drain_chunked(environ["wsgi.input"], DRAIN_LIMIT)
        raise HttpError(411, "send the body with a Content-Length")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise UsageError("bad Content-Length") from None
    if length < 0:
        raise UsageError("bad Content-Length")
    if length > max_body:
        _drain(environ["wsgi.input"], min(length, DRAIN_LIMIT))
        raise HttpError(413, f"request body over {max_body} bytes")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    return Request(method, path, headers, body, params)


def _drain(stream: Any, length: int) -> None:
    """Read and drop `length` bytes, so a client still sending hears the answer instead of a reset."""
    while length > 0:
        chunk = stream.read(min(length, 65536))
        if not chunk:
            return
        length -= len(chunk)


def _drain_chunked(stream: Any, limit: int) -> None:
    """Read and drop a chunked body (up to `limit` bytes): closing on unread data would reset the connection."""
    while limit > 0:
        line = stream.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            return  # not chunked framing: nothing sensible to read
        if size == 0:  # the last chunk; then trailers up to an empty line
            while limit > 0 and (line := stream.readline(8192)) not in (b"", b"\r\n", b"\n"):
                limit -= len(line)
            return
        if size + 2 > limit:
            return
        _drain(stream, size + 2)  # the data and its CRLF
        limit -= size + 2


# -- routes ---------------------------------------------------------------------------------------------
Health = Callable[[], dict[str, Any]]


def _healthz(detail: Health | None) -> Handler:
    def healthz(ctx: Context, request: Request) -> Response:
        """200 once the doors are open; `detail` adds what serve is still doing (apps being reconciled)."""
        from pushdock import __version__  # noqa: PLC0415 -- start-up: loads only when this path runs

        return json_response(200, {"status": "ok", "version": __version__, **(detail() if detail else {})})

    return healthz


def make_app(ctx: Context, queue: DeployQueue | None = None, health: Health | None = None) -> Router:
    """The route table of pushdock's HTTP door; webhook deploys go to `queue` (a new DeployQueue by default),
    `/healthz` adds what `health()` returns."""
    from gitserver.smarthttp import PREFIX, SmartHttp  # noqa: PLC0415 -- start-up: loads only when this path runs

    router = Router(ctx)
    router.mount(PREFIX, SmartHttp(ctx))
    router.add("GET", r"/healthz", _healthz(health))
    router.add("POST", r"/webhooks/github/(?P<app>[^/]+)", GithubWebhook(queue or DeployQueue(ctx)),
               max_body=WEBHOOK_MAX_BODY)
    return router


# -- server ---------------------------------------------------------------------------------------------
class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow client never blocks shutdown
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    timeout: float | None = None  # HttpDoor sets settings.http_idle_timeout: every read and write is bounded

    def handle(self) -> None:
        try:
            super().handle()
        except TimeoutError:  # a silent client: its thread is freed and the connection closed
            logger.debug("http connection idle: closed", peer=str(self.client_address[0]))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("http request", line=self.requestline, status=str(code))

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http server message", message=format % args)


class HttpDoor:
    """The HTTP server of `pushdock serve`, in a background thread."""

    def __init__(self, ctx: Context, queue: DeployQueue | None = None, health: Health | None = None) -> None:
        s = ctx.settings
        self.app = make_app(ctx, queue, health)
        try:
            handler = type("Handler", (_Handler,), {"timeout": s.http_idle_timeout or None})
            self.server = make_server(s.http_host, s.http_port, self.app,
                                      server_class=_ThreadingWSGIServer, handler_class=handler)
        except OSError as e:
            raise PushdockError(f"cannot listen for http on {s.http_host}:{s.http_port}: {e.strerror or e}") from e
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name="http",
                                       daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        self.thread.start()
        return self.address

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits for serve_forever: only call it if that runs
            self.server.shutdown()
            self.thread.join(5)
        self.server.server_close()
