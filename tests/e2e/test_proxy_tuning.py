"""Proxy tuning (`proxy:set APP KEY VALUE`, Dokku's `nginx:set` keys) enforced by real nginx and caddy.

Values are set through the real command registry on an app that is not deployed (no docker: the route is
applied the way the pipeline applies it, with `proxy.apply` and in-process HTTP servers as upstreams).
Every test stops the proxy it started.
"""

from __future__ import annotations

import http.client
import io
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from proxies import certs
from proxies.caddy.proxy import CaddyProxy
from proxies.nginx.proxy import NginxProxy, _layout
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.routing import Upstream
from pushdock.state import Identity
from tests.conftest import free_port

PROXIES: dict[str, type[Any]] = {"nginx": NginxProxy, "caddy": CaddyProxy}
SLOW = 3.0  # seconds the /slow endpoint takes to answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(SLOW)
        self._answer("\n".join(f"{k}: {v}" for k, v in self.headers.items()) if self.path == "/headers" else "ok")

    def do_POST(self) -> None:
        if self.path == "/noread":  # answers before reading the body, as many apps do
            self._answer("did not read")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer(f"got {len(body)}")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client the proxy cut off (413, 504): expected here


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield Upstream("127.0.0.1", srv.server_address[1])
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def web(ctx: Context) -> Context:
    ctx.state.create_app("web")
    ctx.settings.proxy_tls_port = free_port()
    return ctx


@pytest.fixture(params=sorted(PROXIES))
def proxy(request: pytest.FixtureRequest, web: Context) -> Iterator[Any]:
    px = PROXIES[request.param]()
    web.settings.proxy = request.param
    yield px
    px.stop(web)


def run(ctx: Context, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return dispatch(list(argv), ctx, out, err), out.getvalue(), err.getvalue()


def ok(ctx: Context, *argv: str) -> str:
    rc, out, err = run(ctx, *argv)
    assert (rc, err) == (0, ""), err
    return out


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=body, headers={"Host": "web.test", "Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def test_client_max_body_size_is_enforced(proxy: Any, web: Context, upstream: Upstream) -> None:
    ctx, port = web, web.settings.proxy_port
    ok(ctx, "proxy:set", "web", "client-max-body-size", "1k")
    proxy.apply(ctx, "web", ["web.test"], [upstream])
    assert request(port, "POST", "/", b"x" * 512) == (200, "got 512")
    assert request(port, "POST", "/", b"x" * 2048)[0] == 413
    assert request(port, "POST", "/noread", b"x" * 2048)[0] == 413
    ok(ctx, "nginx:set", "web", "client-max-body-size")  # no value: back to the default
    proxy.apply(ctx, "web", ["web.test"], [upstream])
    assert request(port, "POST", "/", b"x" * 2048) == (200, "got 2048")


def test_proxy_read_timeout_answers_504(proxy: Any, web: Context, upstream: Upstream) -> None:
    ctx = web
    ok(ctx, "nginx:set", "web", "proxy-read-timeout", "1s")
    proxy.apply(ctx, "web", ["web.test"], [upstream])
    started = time.monotonic()
    assert request(ctx.settings.proxy_port, "GET", "/slow")[0] == 504
    assert time.monotonic() - started < SLOW


def test_hsts_on_https_only_and_forwarded_headers(proxy: Any, web: Context, upstream: Upstream,
                                                  tmp_path: Path) -> None:
    ctx = web
    crt, key = certs.generate(["web.test"])
    certs.store(ctx, "web", crt, key)
    (tmp_path / "ca.pem").write_bytes(crt)
    ok(ctx, "proxy:set", "web", "hsts", "on")
    ok(ctx, "proxy:set", "web", "hsts-preload", "true")
    ok(ctx, "proxy:set", "web", "hsts-max-age", "300")
    ok(ctx, "proxy:set", "web", "x-forwarded-for-value", "$http_x_forwarded_for")
    proxy.apply(ctx, "web", ["web.test"], [upstream])
    tls = ctx.settings.proxy_tls_port
    res = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "--max-time", "10", "--cacert",
                          str(tmp_path / "ca.pem"), "--resolve", f"web.test:{tls}:127.0.0.1", f"https://web.test:{tls}/"],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode == 0, res.stderr
    assert "strict-transport-security: max-age=300; includeSubDomains; preload" in res.stdout.lower().replace(
        "includesubdomains", "includeSubDomains"), res.stdout
    conn = http.client.HTTPConnection("127.0.0.1", ctx.settings.proxy_port, timeout=10)
    conn.request("GET", "/headers", headers={"Host": "web.test", "X-Forwarded-For": "203.0.113.7"})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.getheader("Strict-Transport-Security") is None  # never on plain HTTP
    assert "X-Forwarded-For: 203.0.113.7\n" in text + "\n", text  # trusted as sent: a load balancer in front


def test_bad_values_are_one_line_and_write_nothing(web: Context, upstream: Upstream) -> None:
    ctx, px = web, NginxProxy()
    try:
        ok(ctx, "proxy:set", "web", "client-max-body-size", "10m")
        px.apply(ctx, "web", ["web.test"], [upstream])
        conf = _layout(px.root(ctx)).app_file("web")
        before, stored = conf.read_bytes(), ctx.state.get("proxy", "web", "tuning")
        logs = px.root(ctx) / "logs"
        for argv, reason in [
            (["client-max-body-size", "10x"], "is not a size like 10m"),
            (["client-max-body-size", "100g"], "0 (no limit) or up to 64g"),
            (["proxy-read-timeout", "0"], "between 1s and 24h"),
            (["proxy-read-timeout", "60 s"], "is not a duration"),
            (["proxy-buffer-size", "1g"], "between 1k and 1m"),
            (["hsts", "maybe"], "is not true or false"),
            (["x-forwarded-for-value", "$request_body"], "is not one of"),
            (["access-log-path", "/etc/cron.d/x.log"], "is not in an allowed folder"),
            (["access-log-path", f"{logs}/../x.log"], "absolute path to a NAME.log file"),
            (["access-log-path", "relative.log"], "absolute path to a NAME.log file"),
            (["error-log-path", f"{logs}/error.log"], "the proxy's own error log"),
            (["client-max-body", "1k"], "unknown key 'client-max-body'"),
        ]:
            for cmd in ("proxy:set", "nginx:set"):
                rc, out, err = run(ctx, cmd, "web", *argv)
                assert rc != 0 and err.startswith("error: ") and err.count("\n") == 1 and reason in err, err
        ctx.identity = Identity(name="ci", role="deployer", apps=("web",), door="ssh")
        rc, _, err = run(ctx, "nginx:set", "web", "access-log-path", f"{logs}/web.log")
        assert rc == 13 and "admin only" in err and err.count("\n") == 1, err
        rc, _, err = run(ctx, "nginx:set", "--global", "hsts", "true")
        assert rc == 13 and "admin only" in err, err
        assert conf.read_bytes() == before
        assert ctx.state.get("proxy", "web", "tuning") == stored
    finally:
        px.stop(ctx)


def test_access_log_and_report(web: Context, upstream: Upstream) -> None:
    ctx, px = web, NginxProxy()
    try:
        log = px.root(ctx) / "logs" / "web-access.log"
        (px.root(ctx) / "logs").mkdir(parents=True, exist_ok=True)
        ok(ctx, "proxy:set", "web", "access-log-path", str(log))
        ok(ctx, "proxy:set", "web", "access-log-format", "pushdock")
        ok(ctx, "nginx:set", "web", "error-log-path", str(log.with_name("web-error.log")))
        ok(ctx, "proxy:set", "--global", "proxy-read-timeout", "2m")
        ok(ctx, "proxy:set", "web", "proxy-buffer-size", "1m")  # nginx -t: the buffers must follow
        px.apply(ctx, "web", ["web.test"], [upstream])
        assert request(ctx.settings.proxy_port, "GET", "/logged")[0] == 200
        deadline = time.monotonic() + 5  # nginx writes the line once the response is sent
        while "/logged" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        line = log.read_text().splitlines()[-1]
        assert '"GET /logged HTTP/1.1" 200' in line and " web.test " in line, line
        assert log.with_name("web-error.log").is_file()  # nginx opened the server's own error log
        rep = json.loads(ok(ctx, "proxy:report", "web", "--format", "json"))
        assert rep["client-max-body-size"] == "default: 100m (caddy: no limit)"
        assert rep["proxy-read-timeout"] == "2m (global)"
        assert (rep["proxy-buffer-size"], rep["access-log-path"]) == ("1m", str(log))
        assert rep["not applied"] == "-"
        assert json.loads(ok(ctx, "nginx:report", "web", "--format", "json")) == rep
        assert json.loads(ok(ctx, "proxy:report", "--format", "json"))["global tuning"] == "proxy-read-timeout=2m"
        ctx.settings.proxy = "caddy"  # the same settings, as caddy would serve them
        rep = json.loads(ok(ctx, "proxy:report", "web", "--format", "json"))
        assert rep["not applied"] == "proxy-buffer-size access-log-format access-log-path error-log-path"
    finally:
        px.stop(ctx)
