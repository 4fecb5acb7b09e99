"""What an HTTP handler takes and gives (gitserver/http.py routes to it): a Request, a Response, an HttpError."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pushdock.errors import PushdockError


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
