"""End-to-end tests of the nginx proxy: a real private nginx routing to in-process HTTP servers.

They need nginx, not docker, so they carry no `docker` marker. Each test stops the nginx it started.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from proxies.nginx.proxy import NginxProxy
from pushdock.context import Context
from pushdock.errors import Conflict, PushdockError
from pushdock.routing import Upstream
from pushdock.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.zero_downtime  # counts failed requests under load: runs alone

Backend = Callable[[str], Upstream]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards nginx's upstream pool

    def _answer(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/headers":
            self._answer("\n".join(f"{k}: {v}" for k, v in self.headers.items()))
        else:
            self._answer(self.server.body)  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        got = 0
        while got < n:
            got += len(self.rfile.read(min(65536, n - got)))
        self._answer(f"{self.server.body}:{got}")  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


@pytest.fixture
def backend() -> Iterator[Backend]:
    """Factory: an HTTP server on 127.0.0.1 answering `body`; returns its Upstream."""
    servers: list[_Server] = []

    def start(body: str) -> Upstream:
        srv = _Server(("127.0.0.1", 0), _Handler)
        srv.body = body  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return Upstream("127.0.0.1", srv.server_address[1])

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def proxy(ctx: Context) -> Iterator[NginxProxy]:
    px = NginxProxy()
    yield px
    px.stop(ctx)


def get(ctx: Context, host: str, path: str = "/", *, method: str = "GET", body: bytes | None = None,
        port: int | None = None) -> tuple[int, str]:
    """One request on a fresh connection (no keep-alive), with a Host header."""
    conn = http.client.HTTPConnection("127.0.0.1", port or ctx.settings.proxy_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Host": host, "Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_routes_by_host_and_404_for_unknown_hosts(ctx: Context, proxy: NginxProxy, backend: Backend) -> None:
    proxy.ensure_running(ctx)
    proxy.apply(ctx, "web", ["web.test", "www.web.test"], [backend("A")])
    assert get(ctx, "web.test") == (200, "A")
    assert get(ctx, "www.web.test") == (200, "A")
    status, text = get(ctx, "nobody.test")
    assert status == 404 and "no app" in text
    status, headers = get(ctx, "web.test", "/headers")
    assert status == 200
    for name in ("X-Forwarded-For: 127.0.0.1", "X-Forwarded-Proto: http", "Host: web.test",
                 f"X-Forwarded-Port: {ctx.settings.proxy_port}", "X-Request-Start: t="):
        assert name in headers
    rep = proxy.report(ctx)
    assert rep["running"] and rep["apps"] == ["web"] and rep["live_generation"] == rep["generation"]


def test_switch_under_load_drops_nothing(ctx: Context, proxy: NginxProxy, backend: Backend) -> None:
    a, b = backend("A"), backend("B")
    proxy.apply(ctx, "web", ["web.test"], [a])  # starts nginx itself
    results: list[tuple[float, int, str]] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 10  # bounded even if the test body fails
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status, text = get(ctx, "web.test")
                results.append((started, status, text))
            except OSError as e:
                errors.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        proxy.apply(ctx, "web", ["web.test"], [b])
        applied = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert len(results) > 100
    assert {status for _, status, _ in results} == {200}
    bodies = {text for _, _, text in results}
    assert bodies == {"A", "B"}
    late = [text for started, _, text in results if started > applied]
    assert late and set(late) == {"B"}, "old workers still routed to A after apply returned"
    assert get(ctx, "web.test") == (200, "B")


def test_two_upstreams_are_load_balanced(ctx: Context, proxy: NginxProxy, backend: Backend) -> None:
    proxy.apply(ctx, "web", ["web.test"], [backend("A"), backend("B")])
    seen = {get(ctx, "web.test")[1] for _ in range(20)}
    assert seen == {"A", "B"}


def test_zero_upstreams_answer_503_then_remove(ctx: Context, proxy: NginxProxy) -> None:
    proxy.apply(ctx, "web", ["web.test"], [])
    assert get(ctx, "web.test") == (503, "app not running\n")
    proxy.remove(ctx, "web")
    assert get(ctx, "web.test")[0] == 404
    assert proxy.report(ctx)["apps"] == []
    proxy.remove(ctx, "web")  # removing twice is fine


def test_rejected_config_keeps_old_routing(ctx: Context, proxy: NginxProxy, backend: Backend) -> None:
    a = backend("A")
    proxy.apply(ctx, "web", ["web.test"], [a])
    app_file = ctx.state.path("nginx", "conf.d", "web.conf")
    before, gen = app_file.read_text(), proxy.report(ctx)["generation"]
    broken = ctx.state.path("nginx", "conf.d", "zz-broken.conf")
    broken.write_text("this is not nginx;\n")  # simulates any config nginx -t refuses
    with pytest.raises(PushdockError) as info:  # a new domain: nginx must take it (a new upstream alone would not
        proxy.apply(ctx, "web", ["web.test", "www.web.test"], [backend("B")])  # touch it: proxies/stable.py)
    assert "nginx rejected the configuration" in str(info.value) and "\n" not in str(info.value)
    assert app_file.read_text() == before
    assert proxy.report(ctx)["generation"] == gen
    assert get(ctx, "web.test") == (200, "A")
    broken.unlink()
    proxy.apply(ctx, "web", ["web.test"], [backend("B")])
    assert get(ctx, "web.test") == (200, "B")


def test_domain_of_another_app_is_refused(ctx: Context, proxy: NginxProxy, backend: Backend) -> None:
    proxy.apply(ctx, "one", ["shared.test"], [backend("A")])
    with pytest.raises(Conflict, match=r"shared\.test"):
        proxy.apply(ctx, "aaa", ["aaa.test", "shared.test"], [backend("B")])
    assert not ctx.state.path("nginx", "conf.d", "aaa.conf").exists()
    assert get(ctx, "shared.test") == (200, "A")


def test_concurrent_applies_are_serialized(ctx: Context, proxy: NginxProxy, backend: Backend) -> None:
    ups = {f"app{i}": backend(f"app{i}") for i in range(4)}
    failures: list[BaseException] = []

    def apply(app: str) -> None:
        try:
            proxy.apply(ctx, app, [f"{app}.test"], [ups[app]])
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=apply, args=(app,)) for app in ups]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    for app in ups:
        assert get(ctx, f"{app}.test") == (200, app)


def test_ensure_running_is_idempotent_and_stop_stops(ctx: Context, proxy: NginxProxy, backend: Backend) -> None:
    proxy.apply(ctx, "web", ["web.test"], [backend("A")])
    first = proxy.report(ctx)
    proxy.ensure_running(ctx)
    proxy.ensure_running(ctx)
    assert proxy.report(ctx) == first  # nothing changed: no restart, no reload
    proxy.stop(ctx)
    rep = proxy.report(ctx)
    assert rep["running"] is False and rep["pid"] is None
    with pytest.raises(OSError):
        get(ctx, "web.test")
    proxy.ensure_running(ctx)  # routes survive a stop
    assert get(ctx, "web.test") == (200, "A")


def test_port_change_moves_the_listener(ctx: Context, proxy: NginxProxy, backend: Backend) -> None:
    proxy.apply(ctx, "web", ["web.test"], [backend("A")])
    old = ctx.settings.proxy_port
    ctx.settings.proxy_port = free_port()
    proxy.ensure_running(ctx)
    assert get(ctx, "web.test") == (200, "A")
    with pytest.raises(OSError):
        get(ctx, "web.test", port=old)


@pytest.mark.parametrize("open_dir", [False, True], ids=["private-data-dir", "traversable-data-dir"])
def test_large_upload_is_buffered(open_dir: bool, tmp_path: Path, backend: Backend) -> None:
    """Bodies above the in-memory buffer go to prefix/temp: the workers' user must reach it."""
    data_dir = Path(tempfile.mkdtemp(prefix="pdn-")) if open_dir else tmp_path
    if open_dir:
        data_dir.chmod(0o755)
    ctx = Context(settings=Settings(data_dir=data_dir, proxy_port=free_port()))
    px = NginxProxy()
    try:
        px.apply(ctx, "web", ["web.test"], [backend("A")])
        conf = ctx.state.path("nginx", "nginx.conf").read_text()
        assert ("\nuser root;" in conf) == (os.geteuid() == 0 and not open_dir)
        size = 2 * 1024 * 1024
        assert get(ctx, "web.test", method="POST", body=os.urandom(size)) == (200, f"A:{size}")
    finally:
        px.stop(ctx)
        if open_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
