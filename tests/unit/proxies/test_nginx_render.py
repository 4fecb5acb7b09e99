"""Unit tests of the nginx proxy's rendering and input validation (no nginx process started)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxies.model import CertRef, Listener, Route
from proxies.nginx.proxy import NginxProxy, render_app, render_main, render_ports, upstream_address, validate_domain
from proxies.plugin import register_proxies
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.routing import Upstream
from pushdock.settings import Settings

PREFIX = Path("/var/lib/pushdock/nginx")
HTTP = (Listener("http", 80),)


def route(app: str = "web", domains: tuple[str, ...] = ("web.example.com",), upstreams: tuple[Upstream, ...] = (),
          listeners: tuple[Listener, ...] = HTTP, **kw: object) -> Route:
    return Route(app=app, domains=domains, upstreams=upstreams, listeners=listeners, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("app.example.com", "app.example.com"),
        ("App.Example.COM", "app.example.com"),
        ("localhost", "localhost"),
        ("*.example.com", "*.example.com"),
        ("x-1.a-b.test.", "x-1.a-b.test"),
    ],
)
def test_validate_domain_accepts_hostnames(raw: str, clean: str) -> None:
    assert validate_domain(raw) == clean


@pytest.mark.parametrize(
    "bad",
    [
        "a;b",
        "a.test; return 200 x",
        "a b.test",
        "a{.test",
        "a}.test",
        '"a.test"',
        "'a.test'",
        "a.test\n",
        "a\nb",
        "",
        "-a.test",
        "a-.test",
        "a..test",
        "a.*.test",
        "a$host.test",
        "a" * 64 + ".test",
        ".".join(["abcdefgh"] * 40),
    ],
)
def test_validate_domain_rejects_non_hostnames(bad: str) -> None:
    with pytest.raises(UsageError):
        validate_domain(bad)


@given(st.text(max_size=80))
def test_no_accepted_domain_can_carry_nginx_syntax(text: str) -> None:
    try:
        name = validate_domain(text)
    except UsageError:
        return
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789.-*")


def test_upstream_address() -> None:
    assert upstream_address(Upstream("127.0.0.1", 32768)) == "127.0.0.1:32768"
    assert upstream_address(Upstream("::1", 8080)) == "[::1]:8080"
    for bad in (Upstream("127.0.0.1;x", 80), Upstream("127.0.0.1", 0), Upstream("127.0.0.1", 70000),
                Upstream("a b", 80), Upstream("", 80)):
        with pytest.raises(UsageError):
            upstream_address(bad)


def test_render_app_load_balances_every_upstream() -> None:
    text = render_app(PREFIX, route(domains=("web.example.com", "www.example.com"),
                                    upstreams=(Upstream("127.0.0.1", 32001), Upstream("127.0.0.1", 32002))))
    assert "upstream app-web {" in text
    assert "  server 127.0.0.1:32001 max_fails=0;\n  server 127.0.0.1:32002 max_fails=0;" in text
    assert "keepalive 16;" in text
    assert "server_name web.example.com www.example.com;" in text
    assert "  listen 0.0.0.0:80;" in text and "ssl" not in text
    for line in ("proxy_pass http://app-web;", "proxy_http_version 1.1;", "proxy_set_header Host $http_host;",
                 "X-Forwarded-For $proxy_add_x_forwarded_for;", "X-Forwarded-Proto $scheme;",
                 "X-Forwarded-Port $server_port;", 'X-Request-Start "t=${msec}";',
                 "proxy_next_upstream error timeout;", "client_max_body_size"):
        assert line in text


def test_render_app_without_upstreams_answers_503() -> None:
    text = render_app(PREFIX, route())
    assert "upstream" not in text
    assert 'return 503 "app not running\\n";' in text
    assert "server_name web.example.com;" in text


def test_render_app_with_tls_redirect_and_extra_ports() -> None:
    cert = CertRef("/x/server.crt", "/x/server.key", "ab" * 32)
    listeners = (Listener("http", 80), Listener("http", 8080), Listener("https", 443), Listener("https", 8443))
    ups = (Upstream("127.0.0.1", 32001),)
    text = render_app(PREFIX, route(upstreams=ups, listeners=listeners, cert=cert))
    http_block, https_block = text.split("\nserver {")[1:]
    assert "listen 0.0.0.0:80;\n  listen 0.0.0.0:8080;" in http_block and "proxy_pass" in http_block
    assert "listen 0.0.0.0:443 ssl;\n  listen 0.0.0.0:8443 ssl;" in https_block
    assert f"ssl_certificate {PREFIX}/certs/web.crt;" in https_block
    assert f"ssl_certificate_key {PREFIX}/certs/web.key;" in https_block and "proxy_pass" in https_block
    redirected = render_app(PREFIX, route(upstreams=ups, listeners=listeners, cert=cert, redirect_to=443))
    assert "return 301 https://$host$request_uri;" in redirected.split("\nserver {")[1]
    on_8443 = render_app(PREFIX, route(upstreams=ups, listeners=listeners, cert=cert, redirect_to=8443))
    assert "return 301 https://$host:8443$request_uri;" in on_8443
    assert "ssl" not in render_app(PREFIX, route(upstreams=ups, listeners=listeners))  # no cert: no https


def test_render_app_rejects_bad_input() -> None:
    with pytest.raises(UsageError):
        render_app(PREFIX, route(upstreams=(Upstream("127.0.0.1;", 1),)))
    with pytest.raises(UsageError):
        render_app(PREFIX, route(app="Web;"))
    assert "server" not in render_app(PREFIX, route(domains=()))


def test_render_main_and_ports() -> None:
    text = render_main(PREFIX)
    for line in ("worker_processes 2;", "daemon on;", f"pid {PREFIX}/nginx.pid;", "worker_shutdown_timeout 30s;",
                 f"listen unix:{PREFIX}/control.sock;", f"include {PREFIX}/ports.conf;",
                 f"include {PREFIX}/generation.conf;", f"include {PREFIX}/conf.d/*.conf;",
                 "server_names_hash_max_size", "server_names_hash_bucket_size", "ssl_protocols TLSv1.2 TLSv1.3;"):
        assert line in text
    assert "\nuser " not in text
    assert "\nuser root;" in render_main(PREFIX, user="root")
    ports = render_ports([Listener("http", 8080), Listener("https", 8443)])
    assert "listen 0.0.0.0:8080 default_server reuseport;" in ports and "return 404" in ports
    assert "listen 0.0.0.0:8443 ssl default_server reuseport;\n  ssl_reject_handshake on;" in ports


def test_apply_rejects_injection_before_writing(tmp_path: Path) -> None:
    ctx = Context(settings=Settings(data_dir=tmp_path, proxy_port=1))
    with pytest.raises(UsageError, match="invalid domain"):
        NginxProxy().apply(ctx, "web", ["web.test;}server{listen 1"], [Upstream("127.0.0.1", 5000)])
    prefix = tmp_path / "nginx"
    assert not (prefix / "conf.d" / "web.conf").exists()
    assert not (prefix / "nginx.pid").exists()
    assert not (prefix / "nginx.conf").exists()


def test_unusable_data_dir_is_refused(tmp_path: Path) -> None:
    ctx = Context(settings=Settings(data_dir=tmp_path / "a b;", proxy_port=1))
    with pytest.raises(Exception, match="unusable for nginx"):
        NginxProxy().report(ctx)


def test_report_when_never_started(tmp_path: Path) -> None:
    ctx = Context(settings=Settings(data_dir=tmp_path, proxy_port=8123))
    rep = NginxProxy().report(ctx)
    assert rep["running"] is False and rep["pid"] is None and rep["apps"] == [] and rep["port"] == 8123


def test_plugin_registers_every_proxy() -> None:
    proxies = register_proxies()
    assert set(proxies) == {"nginx", "caddy", "traefik"}
    for name, px in proxies.items():
        assert px.name == name
        for method in ("ensure_running", "apply", "remove", "stop", "report", "batch", "routes", "serving",
                       "describe"):
            assert callable(getattr(px, method))


@pytest.mark.skipif(os.geteuid() != 0, reason="worker user only matters when nginx starts as root")
def test_worker_user_root_only_when_prefix_unreachable(tmp_path: Path) -> None:
    from proxies.nginx.proxy import _worker_user

    closed = tmp_path / "closed"
    (closed / "nginx").mkdir(parents=True)
    closed.chmod(0o700)
    assert _worker_user(closed / "nginx") == "root"
    assert _worker_user(Path("/")) is None
