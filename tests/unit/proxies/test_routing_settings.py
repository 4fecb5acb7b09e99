"""domains:*, ports:*, certs:* and proxy:set through the real command registry, on apps that are not
deployed (so no proxy runs: the e2e tests cover re-routing). Also Context.domains and resolve()."""

from __future__ import annotations

import datetime
import io
import json
import tarfile
from pathlib import Path

import pytest

from proxies import certs, ports
from proxies.model import Listener
from proxies.routes import resolve
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.routing import Upstream
from pushdock.state import GLOBAL, Identity


def run(ctx: Context, *argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    if stdin is None:
        return dispatch(list(argv), ctx, out, err), out.getvalue(), err.getvalue()
    import sys

    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        return dispatch(list(argv), ctx, out, err), out.getvalue(), err.getvalue()
    finally:
        sys.stdin = saved


@pytest.fixture
def apps(ctx: Context):
    for app in ("web", "api"):
        ctx.state.create_app(app)
    yield ctx
    # a global domain change re-routes every app, which starts this data dir's proxy: stop it
    if (ctx.state.path("nginx") / "nginx.pid").exists():
        ctx.proxy().stop(ctx)


def test_default_and_global_domains(apps: Context) -> None:
    ctx = apps
    assert ctx.domains("web") == ["web.localhost"]
    rc, out, err = run(ctx, "domains:add", "web", "www.example.com", "Shop.Example.com.")
    assert rc == 0, err
    assert ctx.domains("web") == ["web.localhost", "www.example.com", "shop.example.com"]
    assert ctx.state.get_json("domains", "web", "list") == ["www.example.com", "shop.example.com"]
    assert run(ctx, "domains:add", "--global", "apps.example.org")[0] == 0
    assert ctx.domains("api") == ["api.localhost", "api.apps.example.org"]
    assert run(ctx, "domains:remove", "web", "web.localhost")[0] == 0  # the defaults go
    assert ctx.domains("web") == ["www.example.com", "shop.example.com"]
    assert ctx.state.get("domains", "web", "default-disabled") == "1"
    rc, out, _ = run(ctx, "domains:report", "web", "--format", "json")
    assert json.loads(out)["default domains"] == "web.localhost web.apps.example.org (disabled)"
    assert run(ctx, "domains:set", "web", "only.example.com")[0] == 0
    assert ctx.domains("web") == ["only.example.com"]
    assert run(ctx, "domains:clear", "web")[0] == 0
    assert ctx.domains("web") == ["web.localhost", "web.apps.example.org"]
    assert run(ctx, "domains:clear", "--global")[0] == 0
    assert ctx.domains("web") == ["web.localhost"]


@pytest.mark.parametrize("bad", ["-x.com", "a..b", "a" * 300, "a b.com", "x.com;", "{{x}}.com", ""])
def test_invalid_domains_change_nothing(apps: Context, bad: str) -> None:
    rc, _, err = run(apps, "domains:add", "web", "ok.example.com", bad)
    assert rc == 2 and err.startswith("error: invalid domain") and err.count("\n") == 1
    assert apps.domains("web") == ["web.localhost"]
    assert apps.state.get("domains", "web", "list") is None


def test_a_domain_of_another_app_is_refused(apps: Context) -> None:
    assert run(apps, "domains:add", "web", "shared.example.com")[0] == 0
    rc, _, err = run(apps, "domains:add", "api", "shared.example.com")
    assert rc == 1 and "domain shared.example.com is already used by app web" in err
    rc, _, err = run(apps, "domains:add", "api", "web.localhost")  # another app's default domain
    assert rc == 1 and "already used by app web" in err
    assert apps.domains("api") == ["api.localhost"]
    rc, _, err = run(apps, "domains:remove", "api", "api.localhost")
    assert rc == 2 and "no domain left" in err
    rc, _, err = run(apps, "domains:remove", "api", "nope.example.com")
    assert rc == 1 and "has no domain nope.example.com" in err


def test_deployer_cannot_touch_other_apps_or_globals(apps: Context) -> None:
    apps.identity = Identity(name="dev", role="deployer", apps=("web",), door="ssh")
    assert run(apps, "domains:add", "web", "dev.example.com")[0] == 0
    assert run(apps, "domains:add", "api", "x.example.com")[0] == 13
    assert run(apps, "domains:add", "--global", "x.example.com")[0] == 13
    assert run(apps, "proxy:set", "--global", "caddy")[0] == 13


def test_port_mappings(apps: Context) -> None:
    ctx = apps
    assert ports.parse("HTTP:8080:5000") == ports.PortMap("http", 8080, 5000)
    for bad in ("http:80", "ftp:21:5000", "http:0:5000", "http:80:70000", "http:x:5000", "http:80:5000:1"):
        with pytest.raises(UsageError):
            ports.parse(bad)
    rc, _, err = run(ctx, "ports:set", "web", "http:8080")
    assert rc == 2 and "scheme:host:container" in err and ctx.state.get("ports", "web", "map") is None
    rc, _, err = run(ctx, "ports:set", "web", "http:8080:5001")
    assert rc == 2 and "not the web port" in err
    rc, _, err = run(ctx, "ports:set", "web", f"http:{ctx.settings.ssh_port}:5000")
    assert rc == 1 and "SSH port" in err
    assert run(ctx, "ports:set", "web", "http:8080:5000", "https:8443:5000")[0] == 0
    assert ctx.state.get_json("ports", "web", "map") == ["http:8080:5000", "https:8443:5000"]
    rc, _, err = run(ctx, "ports:add", "api", "https:8080:5000")
    assert rc == 1 and "port 8080 serves http for app web" in err
    rc, out, _ = run(ctx, "ports:list", "web", "--format", "json")
    assert [(r["scheme"], r["host"], r["active"]) for r in json.loads(out)] == [
        ("http", 8080, True), ("https", 8443, False)]  # no certificate yet
    assert run(ctx, "ports:remove", "web", "8443")[0] == 0
    assert run(ctx, "ports:add", "web", "http:9090:5000")[0] == 0
    assert ctx.state.get_json("ports", "web", "map") == ["http:8080:5000", "http:9090:5000"]
    assert run(ctx, "ports:clear", "web")[0] == 0
    assert ctx.state.get("ports", "web", "map") is None
    rc, out, _ = run(ctx, "ports:report", "web", "--format", "json")
    assert json.loads(out)["active"] == f"http:{ctx.settings.proxy_port}:5000"


def _pair(domains: list[str], **kw: int) -> tuple[bytes, bytes]:
    return certs.generate(domains, **kw)


def test_certs_add_generate_report_remove(apps: Context, tmp_path: Path) -> None:
    ctx = apps
    crt, key = _pair(["web.localhost"])
    (tmp_path / "a.crt").write_bytes(crt)
    (tmp_path / "a.key").write_bytes(key)
    _, other_key = _pair(["web.localhost"])
    (tmp_path / "b.key").write_bytes(other_key)
    rc, _, err = run(ctx, "certs:add", "web", str(tmp_path / "a.crt"), str(tmp_path / "b.key"))
    assert rc == 2 and "does not match the key" in err and not certs.exists(ctx, "web")
    rc, _, err = run(ctx, "certs:add", "web", str(tmp_path / "a.key"), str(tmp_path / "a.key"))
    assert rc == 2 and "not a PEM certificate" in err
    rc, out, err = run(ctx, "certs:add", "web", str(tmp_path / "a.crt"), str(tmp_path / "a.key"))
    assert rc == 0, err
    key_file = Path(certs.ref(ctx, "web").key)  # type: ignore[union-attr]
    assert key_file.stat().st_mode & 0o777 == 0o600
    rc, out, _ = run(ctx, "certs:report", "web", "--format", "json")
    rep = json.loads(out)
    assert rep["ssl enabled"] == "true" and rep["names"] == "web.localhost" and "self-signed" in rep["issuer"]
    assert run(ctx, "certs:remove", "web")[0] == 0 and not certs.exists(ctx, "web")
    assert run(ctx, "certs:remove", "web")[0] == 1
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        for name, data in (("server.crt", crt), ("server.key", key)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    rc, _, err = run(ctx, "certs:add", "web", stdin=tar.getvalue())
    assert rc == 0, err
    assert certs.info(ctx, "web").fingerprint == certs.check_pair(crt, key).fingerprint  # type: ignore[union-attr]
    rc, _, err = run(ctx, "certs:add", "web", stdin=b"not a tar")
    assert rc == 2 and "not a tar" in err
    assert run(ctx, "domains:add", "web", "www.example.com")[0] == 0
    rc, out, err = run(ctx, "certs:generate", "web")
    assert rc == 0, err
    assert certs.info(ctx, "web").names == ("web.localhost", "www.example.com")  # type: ignore[union-attr]


def test_expired_and_future_certificates_are_refused() -> None:
    crt, key = _pair(["web.localhost"], days=1)
    later = datetime.datetime.now(datetime.UTC).timestamp() + 3 * 86400
    with pytest.raises(UsageError, match="expired on"):
        certs.check_pair(crt, key, now=later)
    with pytest.raises(UsageError, match="not valid before"):
        certs.check_pair(crt, key, now=later - 10 * 86400)
    assert certs.covers(("*.example.com",), "a.example.com")
    assert not certs.covers(("*.example.com",), "a.b.example.com")


def test_resolve_builds_listeners_from_ports_and_certificate(apps: Context) -> None:
    ctx = apps
    pp, tp = ctx.settings.proxy_port, ctx.settings.proxy_tls_port
    r = resolve(ctx, "web", ["web.localhost"], [Upstream("127.0.0.1", 1)])
    assert r.listeners == (Listener("http", pp),) and r.cert is None and r.redirect_to is None
    certs.store(ctx, "web", *_pair(["web.localhost"]))
    ctx.state.set("proxy", "web", "https-redirect", "true")
    r = resolve(ctx, "web", ["web.localhost"], [])
    assert r.listeners == tuple(sorted({Listener("http", pp), Listener("https", tp)}))
    assert r.cert is not None and r.redirect_to == tp
    ctx.state.set_json("ports", "web", "map", ["http:8080:5000", "https:8443:5000"])
    r = resolve(ctx, "web", ["web.localhost"], [])
    assert r.listeners == (Listener("http", 8080), Listener("https", 8443)) and r.redirect_to == 8443


def test_proxy_set_validates(apps: Context) -> None:
    rc, _, err = run(apps, "proxy:set", "--global", "apache")
    assert rc == 2 and "unknown proxy 'apache'" in err
    assert apps.state.get("proxy", GLOBAL, "selected") is None
    assert run(apps, "proxy:set", "web", "https-redirect", "maybe")[0] == 2
    assert run(apps, "proxy:set", "web", "https-redirect", "on")[0] == 0
    assert apps.state.get("proxy", "web", "https-redirect") == "true"
    rc, _, err = run(apps, "proxy:set", "web", "caddy")
    assert rc == 2 and "usage" in err


def test_exposed_web_port_is_a_default_mapping_with_its_source(apps: Context) -> None:
    """A release's EXPOSEd web port P gives Dokku's http:P:P (the release is recorded directly: no image is built
    and nothing is routed here; tests/e2e/test_dokku_compat.py serves one through nginx)."""
    from pushdock.state import Release

    ctx = apps
    ctx.state.save_release(Release(app="web", number=1, image="x", env={}, processes={"web": ""},
                                   formation={"web": 1}, web_port=3000, exposed=[3000, 9000, ctx.settings.ssh_port],
                                   status="current"))
    ctx.state.set("releases", "web", "current", "1")
    proxy = ctx.settings.proxy_port
    assert [str(m) for m in ports.defaults(ctx, "web", tls=False)] == [f"http:{proxy}:3000", "http:3000:3000"]
    report = json.loads(run(ctx, "ports:report", "web", "--format", "json")[1])
    assert report["sources"] == f"http:{proxy}:3000 default, http:3000:3000 dockerfile EXPOSE"
    assert report["exposed, not mapped"] == (f"9000 (not the web port (3000): only the web port is routed), "
                                             f"{ctx.settings.ssh_port} (not the web port (3000): only the web "
                                             "port is routed)")
    route = resolve(ctx, "web", ["web.localhost"], [])
    assert Listener("http", 3000) in route.listeners
    # ports:remove starts from the defaults, as in Dokku's docs (plan only: applying it would start the proxy)
    assert ports.plan(ctx, "web", "remove", ["http:3000:3000"]) == [ports.parse(f"http:{proxy}:3000")]
    ctx.settings.expose_ports = False
    assert [str(m) for m in ports.defaults(ctx, "web", tls=False)] == [f"http:{proxy}:3000"]
