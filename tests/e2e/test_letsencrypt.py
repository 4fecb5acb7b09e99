"""letsencrypt:* against a real ACME server: Debian's pebble, with pebble-challtestsrv answering DNS.

One pebble per module (its HTTP-01 port is the module's proxy port), used by nginx and by caddy in turn.
pebble's own HTTPS endpoint uses a certificate made here (the package ships none): PUSHDOCK_ACME_CA_BUNDLE.
The certificates it issues are valid 20 days, so `letsencrypt:auto-renew` finds them due at once.
The app's web process is an in-process HTTP server handed to the proxy by a stub scheduler that goes
through the real bus (no Docker: what is under test is the CA, the proxy and the certificate path).
"""

from __future__ import annotations

import io
import json
import os
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from proxies import certs
from pushdock.bus import Bus
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.routing import Upstream
from pushdock.scheduler import Instance
from pushdock.settings import Settings
from pushdock.specs import hookimpl
from pushdock.state import Identity, Release
from tests.conftest import free_port
from tests.harness import wait_port

VALIDITY = 20 * 86400


class Pebble:
    def __init__(self, base: Path, http_port: int) -> None:
        self.http_port = http_port
        self.port, self.mgmt, self.dns, self.dns_mgmt = free_port(), free_port(), free_port(), free_port()
        crt, key = certs.generate(["localhost"])
        self.ca_bundle = base / "pebble-https.pem"
        self.ca_bundle.write_bytes(crt)
        (base / "pebble-https.key").write_bytes(key)
        (base / "pebble.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": f"127.0.0.1:{self.mgmt}",
            "certificate": str(self.ca_bundle), "privateKey": str(base / "pebble-https.key"),
            "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": False, "certificateValidityPeriod": VALIDITY}}))
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        log = open(base / "pebble.log", "wb")
        self.log = log
        self.procs = [
            subprocess.Popen(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                              "-dns01", f"127.0.0.1:{self.dns}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                              "-management", f"127.0.0.1:{self.dns_mgmt}"], stdout=log, stderr=log),
            subprocess.Popen(["pebble", "-config", str(base / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns}"],
                             stdout=log, stderr=log, env=env),
        ]
        # pebble's ports, and the DNS server it validates through (its management port: up with its DNS one)
        for port in (self.port, self.mgmt, self.dns_mgmt):
            wait_port(port)

    @property
    def directory(self) -> str:
        return f"https://localhost:{self.port}/dir"

    def root(self) -> bytes:
        """The root the issued certificates chain to (pebble makes a new one at each start)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen(f"https://localhost:{self.mgmt}/roots/0", context=ctx, timeout=10) as r:
            return bytes(r.read())

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
            p.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    p = Pebble(tmp_path_factory.mktemp("pebble"), free_port())
    yield p
    p.stop()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from web\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class StubScheduler:
    """Reports one running web instance: the in-process server."""

    name = "stub"

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def instances(self, ctx: Context, app: str) -> list[Instance]:
        current = ctx.state.current_release(app)
        assert current is not None
        return [Instance(app, "web", 1, current.number, "id", f"{app}-web-1", "running", self.upstream)]


@pytest.fixture
def web() -> Iterator[Upstream]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield Upstream("127.0.0.1", srv.server_address[1])
    srv.shutdown()
    srv.server_close()


@pytest.fixture(params=["nginx", "caddy"])
def site(request: pytest.FixtureRequest, tmp_path: Path, pebble: Pebble, web: Upstream) -> Iterator[Context]:
    from proxies import plugin as proxies_plugin

    settings = Settings(data_dir=tmp_path / "data", proxy_port=pebble.http_port, proxy_tls_port=free_port(),
                        proxy=request.param, scheduler="stub", domain="pushdock.test",
                        acme_ca_bundle=pebble.ca_bundle)

    class Stub:
        @hookimpl
        def register_schedulers(self) -> dict[str, Any]:
            return {"stub": StubScheduler(web)}

    bus = Bus(settings.data_dir / "plugins", extra_plugins=(proxies_plugin, Stub()), entry_points=False)
    ctx = Context(settings=settings, identity=Identity(name="tester", role="admin", door="cli"), bus_override=bus)
    ctx.state.create_app("web")
    ctx.state.promote_release(Release(app="web", number=1, image="stub", env={}, processes={"web": "x"},
                                      formation={"web": 1}))
    ctx.state.set_json("domains", "web", "list", ["www.web.test"])
    from hooks.pipeline import reroute

    reroute(ctx, "web")
    yield ctx
    ctx.proxy().stop(ctx)


def run(ctx: Context, *args: str, ok: bool = True) -> tuple[str, str]:
    """(stdout, stderr) of the command run as the host CLI runs it."""
    out, err = io.StringIO(), io.StringIO()
    rc = dispatch(list(args), ctx, out, err)
    assert (rc == 0) == ok, (args, out.getvalue(), err.getvalue())
    assert ok or err.getvalue().startswith("error: ")
    return out.getvalue(), err.getvalue()


def https_get(ctx: Context, host: str, cafile: Path) -> subprocess.CompletedProcess[str]:
    port = ctx.settings.proxy_tls_port
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(cafile), "--resolve",
                           f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/"],
                          capture_output=True, text=True, timeout=20)


def http_get(ctx: Context, host: str, path: str) -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", ctx.settings.proxy_port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.getheader("Location") or r.read().decode()
    finally:
        conn.close()


def test_issue_serve_renew_revoke(site: Context, pebble: Pebble, tmp_path: Path) -> None:
    ctx = site
    run(ctx, "letsencrypt:set", "--global", "server", pebble.directory)
    run(ctx, "letsencrypt:set", "--global", "email", "ops@example.com")
    run(ctx, "proxy:set", "web", "https-redirect", "on")
    out, err = run(ctx, "letsencrypt:enable", "web")
    assert err == ""
    assert "web.pushdock.test" in out and "www.web.test" in out
    key = ctx.state.path("data", "letsencrypt", "--global", "account.key")
    assert key.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in out
    root = tmp_path / "root.pem"
    root.write_bytes(pebble.root())
    for host in ("web.pushdock.test", "www.web.test"):
        res = https_get(ctx, host, root)
        assert (res.returncode, res.stdout) == (0, "hello from web\n"), res.stderr
    # HTTP answers 301 to HTTPS, the challenge path excepted (a missing token is 404, not a redirect)
    status, location = http_get(ctx, "www.web.test", "/x")
    assert status == 301 and location.startswith("https://www.web.test:")
    assert http_get(ctx, "www.web.test", "/.well-known/acme-challenge/nope")[0] == 404
    rows = json.loads(run(ctx, "letsencrypt:list", "--format", "json")[0])
    assert [r["app"] for r in rows] == ["web"] and 18 <= rows[0]["days_left"] <= 20
    first = certs.info(ctx, "web")
    assert first is not None and "Pebble" in first.issuer
    # 20 days left is within 30: due
    assert "web: renewed" in run(ctx, "letsencrypt:auto-renew")[0]
    second = certs.info(ctx, "web")
    assert second is not None and second.fingerprint != first.fingerprint
    assert https_get(ctx, "www.web.test", root).returncode == 0
    events = [e for e in ctx.state.read_events(50) if e["action"] in ("letsencrypt:issue", "letsencrypt:renew")]
    assert [(e["action"], e["result"]) for e in events] == [("letsencrypt:issue", "ok"), ("letsencrypt:renew", "ok")]
    run(ctx, "letsencrypt:revoke", "web")
    assert certs.info(ctx, "web") is None
    assert run(ctx, "letsencrypt:list", "--format", "json")[0].strip() == "[]"
    assert https_get(ctx, "www.web.test", root).returncode != 0


def test_a_refused_challenge_is_one_line_and_changes_nothing(site: Context, pebble: Pebble) -> None:
    """A name whose DNS fails (challtestsrv answers SERVFAIL) fails the order: the CA's reason, one line."""
    ctx = site
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{pebble.dns_mgmt}/set-servfail", method="POST",
        data=json.dumps({"host": "elsewhere.test."}).encode()), timeout=5).close()
    ctx.state.set_json("domains", "web", "list", ["elsewhere.test"])
    run(ctx, "letsencrypt:set", "--global", "server", pebble.directory)
    _, err = run(ctx, "letsencrypt:enable", "web", ok=False)
    assert err.count("\n") == 1 and err.startswith("error: elsewhere.test: the CA refused the challenge"), err
    assert certs.info(ctx, "web") is None
    assert ctx.state.get("letsencrypt", "web", "enabled") is None
    assert ctx.proxy().routes(ctx)["web"].challenge_root is None
    failed = [e for e in ctx.state.read_events(20) if e["action"] == "letsencrypt:issue"]
    assert failed and failed[-1]["result"] == "failed"
