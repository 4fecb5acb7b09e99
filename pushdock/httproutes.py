"""What a plugin adds to the HTTP door (the `http-routes` trigger): routes and raw WSGI mounts, as data.

A route is `(method, path regex, handler, body limit)`; a handler takes the Context and a Request and returns a
Response, synchronously (the door runs it in a worker thread). A mount hands every path under its prefix to a
WSGI app that streams (git over HTTP). The door (web/) owns sockets, caps and the rendering of errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pushdock.errors import Conflict, Forbidden, NotFound, PushdockError, UsageError

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from pushdock.context import Context

MAX_BODY = 25 * 1024 * 1024  # GitHub's payload cap
# Which error means which status; anything else of the family is 500 with its one-line message.
STATUS_OF: tuple[tuple[type[PushdockError], int], ...] = (
    (UsageError, 400), (Forbidden, 403), (NotFound, 404), (Conflict, 409),
)


def status_of(error: PushdockError) -> int:
    return next((code for kind, code in STATUS_OF if isinstance(error, kind)), 500)


class HttpError(PushdockError):
    """An HTTP answer other than the PushdockError family's (401, 413, 415...): status and one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict[str, str]  # named groups of the route's pattern


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


def json_response(status: int, data: Any) -> Response:
    return Response(status, (json.dumps(data) + "\n").encode())


Handler = Callable[["Context", Request], Response]
WSGIApp = Callable[["WSGIEnvironment", "StartResponse"], Iterable[bytes]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    max_body: int = MAX_BODY


@dataclass(frozen=True)
class Mount:
    prefix: str  # e.g. "/git/": every path starting with it, PATH_INFO unchanged
    app: WSGIApp


def route(method: str, pattern: str, handler: Handler, *, max_body: int = MAX_BODY) -> Route:
    return Route(method, re.compile(pattern), handler, max_body)
