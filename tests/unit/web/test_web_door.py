"""The HTTP door (FastAPI on uvicorn): /healthz, JSON errors, the plugins' route table, caps on bodies."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator

import pytest

from pushdock.context import Context
from pushdock.errors import NotFound, PushdockError
from pushdock.httproutes import Request, Response, json_response, route
from web.door import HttpDoor


def get(port: int, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body)
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
    def boom(ctx: Context, request: Request) -> Response:
        raise {"missing": NotFound("no such app x"), "other": PushdockError("bad"),
               "crash": RuntimeError("secret detail")}[request.params["what"]]

    def echo(ctx: Context, r: Request) -> Response:
        return json_response(200, {"name": r.params["name"], "body": r.body.decode()})

    d = HttpDoor(ctx, routes=[route("GET", r"/boom/(?P<what>\w+)", boom),
                              route("POST", r"/echo/(?P<name>[a-z]+)", echo, max_body=10)])
    d.start()
    try:
        port = d.address[1]
        assert get(port, "/echo/abc", "POST", b"hi") == (200, {"name": "abc", "body": "hi"})
        assert get(port, "/echo/abc", "POST", b"x" * 11) == (413, {"error": "request body over 10 bytes"})
        assert get(port, "/echo/abc") == (405, {"error": "method not allowed"})
        assert get(port, "/boom/missing") == (404, {"error": "no such app x"})
        assert get(port, "/boom/other") == (500, {"error": "bad"})
        status, body = get(port, "/boom/crash")
        assert status == 500
        assert body["error"].startswith("internal error ") and "secret" not in body["error"]
    finally:
        d.stop()


def test_a_stalled_body_is_408(ctx: Context) -> None:
    ctx.settings.http_idle_timeout = 1
    d = HttpDoor(ctx, routes=[route("POST", r"/echo", lambda c, r: json_response(200, {}))])
    d.start()
    try:
        with socket.create_connection(d.address, timeout=10) as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            assert s.recv(100).startswith(b"HTTP/1.1 408")
    finally:
        d.stop()


def test_port_in_use_is_a_user_error(ctx: Context, door: HttpDoor) -> None:
    ctx.settings.http_port = door.address[1]
    with pytest.raises(PushdockError, match=r"cannot listen for http on 127\.0\.0\.1"):
        HttpDoor(ctx)


def test_a_mounts_stalled_body_frees_its_thread(ctx: Context) -> None:
    """A WSGI mount (git over HTTP) reading a body that stalls gets an end of input after the idle timeout."""
    import threading

    from pushdock.httproutes import Mount

    ended = threading.Event()

    def app(environ, start_response):  # reads what it is told, then answers
        data = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        ended.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"got {len(data)}".encode()]

    ctx.settings.http_idle_timeout = 1
    d = HttpDoor(ctx, routes=[Mount("/git/", app)])
    d.start()
    try:
        with socket.create_connection(d.address, timeout=10) as s:
            s.sendall(b"POST /git/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            assert ended.wait(8), "the WSGI app still waits for the stalled body"
    finally:
        d.stop()
