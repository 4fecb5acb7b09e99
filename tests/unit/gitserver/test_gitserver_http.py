"""The HTTP door: /healthz, JSON errors, and the route table."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from gitserver.http import HttpDoor, Request, Response, json_response, make_app
from pushdock.context import Context
from pushdock.errors import NotFound, PushdockError


def get(port: int, path: str, method: str = "GET") -> tuple[int, dict]:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        assert resp.getheader("Content-Type") == "application/json"
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.fixture
def door(ctx: Context) -> Iterator[HttpDoor]:
    d = HttpDoor(ctx)
    d.start()
    yield d
    d.stop()


def test_healthz(door: HttpDoor) -> None:
    assert get(door.address[1], "/healthz") == (200, {"status": "ok", "version": "0.1.0"})


def test_unknown_path_is_a_json_404(door: HttpDoor) -> None:
    assert get(door.address[1], "/nope") == (404, {"error": "not found"})
    assert get(door.address[1], "/healthz/x") == (404, {"error": "not found"})


def test_wrong_method_is_a_json_405(door: HttpDoor) -> None:
    assert get(door.address[1], "/healthz", "POST") == (405, {"error": "method not allowed"})


def test_the_route_table_grows_and_renders_errors(ctx: Context) -> None:
    app = make_app(ctx)

    def boom(ctx: Context, request: Request) -> Response:
        raise {"missing": NotFound("no such app x"), "other": PushdockError("bad"),
               "crash": RuntimeError("secret detail")}[request.params["what"]]

    app.add("GET", r"/boom/(?P<what>\w+)", boom)
    app.add("GET", r"/echo/(?P<name>[a-z]+)", lambda ctx, r: json_response(200, {"name": r.params["name"]}))
    calls: list[str] = []

    def call(path: str) -> tuple[str, dict]:  # type: ignore[type-arg]
        body = app({"REQUEST_METHOD": "GET", "PATH_INFO": path, "wsgi.input": None},
                   lambda status, headers: calls.append(status))
        return calls[-1], json.loads(b"".join(body))

    assert call("/echo/abc") == ("200 OK", {"name": "abc"})
    assert call("/boom/missing") == ("404 Not Found", {"error": "no such app x"})
    assert call("/boom/other") == ("500 Internal Server Error", {"error": "bad"})
    status, body = call("/boom/crash")
    assert status == "500 Internal Server Error"
    assert body["error"].startswith("internal error ") and "secret" not in body["error"]


def test_port_in_use_is_a_user_error(ctx: Context, door: HttpDoor) -> None:
    ctx.settings.http_port = door.address[1]
    with pytest.raises(PushdockError, match=r"cannot listen for http on 127\.0\.0\.1"):
        HttpDoor(ctx)
