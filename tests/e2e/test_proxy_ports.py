"""Issue 13 item 2: a host port another program holds cannot take the proxy down, for any app.

A real `pushdock serve` per test (nginx, caddy or traefik), real pushes and `ssh` commands, real Docker; the "other
program" is a plain listening socket of this test process (no SO_REUSEPORT: what any server does).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Server, free_port, http_get, unique

pytestmark = pytest.mark.docker


@pytest.fixture(params=["nginx", "caddy", "traefik"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, PUSHDOCK_PROXY=request.param).start()
    srv.add_key()
    yield srv
    srv.stop()


@contextlib.contextmanager
def held(port: int) -> Iterator[socket.socket]:
    """Another program listening on 0.0.0.0:port (SO_REUSEADDR, as servers do: the proxy's closed
    connections may linger in TIME_WAIT)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(8)
        yield s
    finally:
        s.close()


def two_apps(server: Server) -> tuple[str, str]:
    a, b = unique("pa"), unique("pb")
    for app in (a, b):
        assert server.push(server.app_repo(app, body=f"body of {app}"), app).returncode == 0
    return a, b


def serves(server: Server, app: str, port: int | None = None) -> bool:
    try:
        return http_get(port or server.proxy_port, f"{app}.localhost") == (200, f"body of {app}")
    except OSError:
        return False


def mappings(server: Server, app: str) -> str:
    return json.loads(server.ssh("ports:report", app, "--format", "json").stdout)["mappings"]


def test_a_port_another_program_holds_is_refused(server: Server) -> None:
    a, b = two_apps(server)
    taken = free_port()
    with held(taken):
        before = mappings(server, a)
        res = server.ssh("ports:add", a, f"http:{taken}:5000", check=False)
        assert res.returncode != 0
        assert res.stderr.splitlines() == [f"error: port {taken} is in use by another program"], res.stderr
        assert mappings(server, a) == before
        # an app never deployed is refused the same way
        server.ssh("apps:create", "pc-" + a[3:])
        res = server.ssh("ports:add", "pc-" + a[3:], f"http:{taken}:5000", check=False)
        assert res.stderr.splitlines() == [f"error: port {taken} is in use by another program"], res.stderr
        assert serves(server, a) and serves(server, b)
        # later route changes work; a port our own proxy already holds (for another app) is fine
        port = free_port()
        server.ssh("ports:add", b, f"http:{port}:5000")
        server.ssh("ports:add", a, f"http:{port}:5000")
        assert serves(server, a, port) and serves(server, b, port)
        assert serves(server, a) and serves(server, b)
        # and the proxy restarts
        server.ssh("proxy:stop")
        assert server.ssh("proxy:start").stderr == ""
        assert serves(server, a) and serves(server, b) and serves(server, a, port) and serves(server, b, port)


def test_a_port_taken_while_the_proxy_is_down_does_not_keep_it_down(server: Server) -> None:
    a, b = two_apps(server)
    port = free_port()
    server.ssh("ports:add", a, f"http:{port}:5000")
    assert serves(server, a, port)
    server.ssh("proxy:stop")
    with held(port):
        res = server.ssh("proxy:start")
        assert res.stderr == "" and f"port {port} of {a}: in use by another program" in res.stdout, res.stdout
        assert serves(server, a) and serves(server, b)
        other = free_port()
        server.ssh("ports:add", b, f"http:{other}:5000")  # a later route change works
        assert serves(server, b, other) and serves(server, a) and serves(server, b)
    # once the other program is gone, the next change of routes serves the app's port again
    server.ssh("ports:add", b, f"http:{free_port()}:5000")
    assert serves(server, a, port)
    report = json.loads(server.ssh("proxy:report", "--format", "json").stdout)
    assert not report.get("parked"), report


def test_a_reload_that_fails_puts_the_files_back(tmp_path: Path) -> None:
    """nginx only: a port taken after pushdock checked it (between `nginx -t` and the reload) makes the reload
    fail after the files were written; every file is put back and what nginx runs is what is on disk."""
    server = Server(tmp_path, PUSHDOCK_PROXY="nginx").start()
    try:
        server.add_key()
        a, b = two_apps(server)
        port = free_port()
        conf = server.data / "nginx" / "conf.d" / f"{a}.conf"
        grabbed = threading.Event()
        stop = threading.Event()
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def grab() -> None:  # the other program: binds the port as soon as pushdock wrote the app's file
            deadline = time.monotonic() + 120
            while not stop.is_set() and time.monotonic() < deadline:
                if f"0.0.0.0:{port};" in conf.read_text():
                    holder.bind(("0.0.0.0", port))
                    holder.listen(8)
                    grabbed.set()
                    return
                time.sleep(0.001)

        thread = threading.Thread(target=grab, daemon=True)
        thread.start()
        files = {p: p.read_text() for p in (conf, server.data / "nginx" / "ports.conf")}
        started = time.monotonic()
        res = server.ssh("ports:add", a, f"http:{port}:5000", check=False)
        failed_in = time.monotonic() - started
        stop.set()
        thread.join(5)
        try:
            assert grabbed.is_set(), "the other program did not get the port in time"
            first, *rest = res.stderr.splitlines()
            assert res.returncode != 0 and first.startswith("error: "), res.stderr
            assert f"bind() to 0.0.0.0:{port} failed" in first and all(ln.startswith("hint: ") for ln in rest)
            assert failed_in < 10, failed_in
            assert {p: p.read_text() for p in files} == files
            report = json.loads(server.ssh("proxy:report", "--format", "json").stdout)
            assert report["live_generation"] == report["generation"], report
            assert serves(server, a) and serves(server, b)
            other = free_port()
            server.ssh("ports:add", b, f"http:{other}:5000")
            assert serves(server, b, other) and serves(server, a)
            server.ssh("proxy:stop")
            server.ssh("proxy:start")
            assert serves(server, a) and serves(server, b) and serves(server, b, other)
        finally:
            holder.close()
    finally:
        server.stop()
