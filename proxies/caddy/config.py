"""Caddy's JSON configuration: one server per port, one route per app and port (`@id` app-APP-PORT).

Each server's routes are: a subroute of exact-host app routes (`@id` pN-exact), a subroute of
wildcard-host ones (pN-wild: exact names win), and a 404 for unknown hosts. One app's change is then
one admin-API call on its own `@id` (PATCH to replace, POST to the subroute to add, DELETE); anything
bigger is one `POST /load` of the whole document. Every API mutation is one reload of caddy.

Upstreams at the proxy's stable address (`Steered`, proxies/stable.py: a redeploy switches a kernel rule
underneath, caddy is not told) are reached through two reverse_proxy handlers: while the file
`switching/APP` exists (from just before a switch until the old upstream's connections drained), an unpooled
one (a new connection per request, which the rule sends to the current container); otherwise caddy's pooled
one. Go's transport reuses a busy pooled connection for as long as requests come: with the marker, the pooled
connections get no requests, go idle and are closed by the drain, so after it every pooled connection is to
the new container.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from proxies.model import Listener, Route, Table, ports_in_use
from proxies.routes import upstream_address
from pushdock import proxy_tuning

Key = tuple[str, str]  # (server name, "exact" | "wild")
Op = tuple[str, str, Any]  # (method, admin path, JSON body or None)
NOT_FOUND = {"handler": "static_response", "status_code": 404, "body": "no app is served at this host\n"}
TOO_LARGE = {"handler": "static_response", "status_code": 413, "body": "request body too large\n"}
NOT_RUNNING = {"handler": "static_response", "status_code": 503, "body": "app not running\n"}
FORWARDED = {"handler": "headers", "request": {"set": {"X-Forwarded-Port": ["{http.request.local.port}"],
                                                       "X-Request-Start": ["t={time.now.unix_ms}"]}}}


class Steered(NamedTuple):
    """The proxy's stable address, and the folder of its `switching/APP` marker files."""

    address: str
    switching: str


def server_name(port: int) -> str:
    return f"p{port}"


def _handler(route: Route, li: Listener, steered: Steered | None) -> dict[str, Any]:
    if li.scheme == "http" and route.redirect_to is not None:
        port = "" if route.redirect_to == 443 else f":{route.redirect_to}"
        return {"handler": "static_response", "status_code": 301,
                "headers": {"Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]}}
    if not route.upstreams:
        return NOT_RUNNING
    # Kept small: every admin-API call re-provisions every handler (~50 us each); shared request headers
    # are set once per server (FORWARDED below), the default transport and random selection are implicit.
    proxy: dict[str, Any] = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": upstream_address(u)} for u in route.upstreams],
        # A dial that fails (an upstream going away) is retried on another one for up to 5 s.
        "load_balancing": {"try_duration": "5s", "try_interval": "100ms"},
    }
    tune = route.tune
    if "proxy-read-timeout" in tune:
        seconds = proxy_tuning.duration_seconds(tune["proxy-read-timeout"])
        proxy["transport"] = {"protocol": "http", "read_timeout": f"{seconds}s"}
        # caddy retries a GET that timed out until try_duration; like nginx, answer 504 after the timeout
        # (a request that never reached an upstream is still retried)
        proxy["load_balancing"]["retry_match"] = [{"method": ["NONE"]}]
    forwarded = _forwarded(tune)
    if forwarded:
        proxy["headers"] = {"request": {"set": forwarded}}
    if steered is None or not all(u.host == steered.address for u in route.upstreams):
        return proxy
    # while the app switches: a new connection per request (see the module's docstring)
    unpooled = {**proxy, "transport": {"protocol": "http", **proxy.get("transport", {}),
                                       "keep_alive": {"enabled": False}}}
    return {"handler": "subroute", "routes": [
        {"match": [{"file": {"root": steered.switching, "try_files": [f"/{route.app}"]}}],
         "handle": [unpooled], "terminal": True},
        {"handle": [proxy]},
    ]}


def _forwarded(tune: dict[str, str]) -> dict[str, list[str]]:
    """Request headers the app's `x-forwarded-*` keys set (caddy's reverse_proxy applies them after its own)."""
    out: dict[str, list[str]] = {}
    for key, header in (("x-forwarded-for-value", "X-Forwarded-For"), ("x-forwarded-port-value", "X-Forwarded-Port"),
                        ("x-forwarded-proto-value", "X-Forwarded-Proto")):
        placeholder = proxy_tuning.FORWARDED_VALUES[key].get(tune.get(key, ""))
        if placeholder is not None:
            out[header] = [placeholder]
    if "x-forwarded-ssl" in tune:
        out["X-Forwarded-Ssl"] = [tune["x-forwarded-ssl"]]
    return out


def _handlers(route: Route, li: Listener, steered: Steered | None) -> list[dict[str, Any]]:
    """The route's handlers: the tuned ones (body size limit, HSTS on HTTPS), then the proxy or a response."""
    tune = route.tune
    out: list[dict[str, Any]] = []
    size = tune.get("client-max-body-size")
    if size is not None and size != "0":
        limit = proxy_tuning.size_bytes(size)
        # request_body only fails the reads past the limit: an app that answers before reading its body
        # would still answer. A Content-Length over the limit is refused at once, as nginx does.
        header = "{http.request.header.Content-Length}"
        out.append({"handler": "subroute", "routes": [{
            "match": [{"expression": f'{header} != "" && int({header}) > {limit}'}],
            "handle": [TOO_LARGE]}]})
        out.append({"handler": "request_body", "max_size": limit})
    hsts = proxy_tuning.hsts_header(tune) if li.scheme == "https" else None
    if hsts is not None:
        out.append({"handler": "headers", "response": {"set": {"Strict-Transport-Security": [hsts]}}})
    return [*out, _handler(route, li, steered)]


def _with_challenge(handlers: list[dict[str, Any]], root: str) -> dict[str, Any]:
    """letsencrypt's HTTP-01 answers served as files from `root`, before the app (or its redirect)."""
    return {"handler": "subroute", "routes": [
        {"match": [{"path": ["/.well-known/acme-challenge/*"]}], "terminal": True,
         "handle": [{"handler": "file_server", "root": root}]},
        {"handle": handlers},
    ]}


def app_routes(route: Route, steered: Steered | None = None) -> dict[Key, dict[str, Any]]:
    """The app's routes by (server, exact|wild); `steered`: the stable address (see the module's docstring)."""
    hosts = {"exact": [d for d in route.domains if not d.startswith("*.")],
             "wild": [d for d in route.domains if d.startswith("*.")]}
    out: dict[Key, dict[str, Any]] = {}
    for li in route.listeners:
        if li.scheme == "https" and route.cert is None:
            continue
        for kind, names in hosts.items():
            if names:
                rid = f"app-{route.app}-{li.port}" + ("-wild" if kind == "wild" else "")
                handlers = _handlers(route, li, steered)
                if li.scheme == "http" and route.challenge_root is not None:
                    handlers = [_with_challenge(handlers, route.challenge_root)]
                out[(server_name(li.port), kind)] = {
                    "@id": rid, "match": [{"host": names}], "terminal": True, "handle": handlers}
    return out


def cert_entry(route: Route) -> dict[str, Any] | None:
    if route.cert is None or not route.https:
        return None
    crt, key = route.cert.read()
    return {"@id": f"cert-{route.app}", "certificate": crt, "key": key, "tags": [route.app]}


def full_config(table: Table, default: Listener, *, admin: str, storage: str,
                held: dict[int, tuple[int, str]] | None = None, steered: Steered | None = None) -> dict[str, Any]:
    """The whole document: admin endpoint, every server, every route, every certificate.

    `held`: port -> (fd, scheme) of the listening sockets caddy inherited at start (`fd/N`): caddy
    replaces the sockets it opens itself on every reload, and connections waiting in the old socket's
    backlog are reset; an inherited socket stays the same. A held port no app uses answers 404.
    """
    held = held or {}
    servers: dict[str, Any] = {}
    per_server: dict[Key, list[dict[str, Any]]] = {}
    for app in sorted(table):
        for key, r in app_routes(table[app], steered).items():
            per_server.setdefault(key, []).append(r)
    in_use = {li.port: li for li in ports_in_use(table, default)}
    for port, (_, scheme) in held.items():
        in_use.setdefault(port, Listener(scheme, port))
    for li in (in_use[p] for p in sorted(in_use)):
        name = server_name(li.port)
        # tcp4 (not caddy's dual-stack default) shares the port with nginx's sockets (SO_REUSEPORT)
        address = f"fd/{held[li.port][0]}" if li.port in held else f"tcp4/0.0.0.0:{li.port}"
        server: dict[str, Any] = {
            "listen": [address],
            "automatic_https": {"disable": True},
            "routes": [{"handle": [FORWARDED]}] + [
                {"@id": f"{name}-{kind}", "handle": [{"handler": "subroute",
                                                       "routes": per_server.get((name, kind), [])}]}
                for kind in ("exact", "wild")
            ] + [{"handle": [NOT_FOUND]}],
        }
        if li.scheme == "https":
            server["tls_connection_policies"] = [{}]
            # HTTP/3 needs a UDP socket of its own; an inherited TCP fd cannot carry QUIC
            server["protocols"] = ["h1", "h2"]
        servers[name] = server
    certs = [c for app in sorted(table) if (c := cert_entry(table[app])) is not None]
    apps: dict[str, Any] = {"http": {"grace_period": "30s", "servers": servers}}
    if certs:
        apps["tls"] = {"certificates": {"load_pem": certs}}
    return {
        "admin": {"listen": admin, "config": {"persist": False}},
        "logging": {"logs": {"default": {"level": "ERROR"}}},
        "storage": {"module": "file_system", "root": storage},
        "apps": apps,
    }


def plan(old: Table, new: Table, changed: set[str], default: Listener,
         steered: Steered | None = None) -> list[Op] | None:
    """The admin-API calls that turn `old` into `new` app by app; None when the servers change
    (ports, schemes) or certificates appear where caddy has none: then the whole document is loaded."""
    if ports_in_use(old, default) != ports_in_use(new, default):
        return None
    had_certs = any(cert_entry_exists(r) for r in old.values())
    ops: list[Op] = []
    for app in sorted(changed):
        before = app_routes(old[app], steered) if app in old else {}
        after = app_routes(new[app], steered) if app in new else {}
        for key in sorted(set(before) | set(after)):
            if key in before and key in after:
                if before[key] != after[key]:
                    ops.append(("PATCH", f"/id/{after[key]['@id']}", after[key]))
            elif key in after:
                ops.append(("POST", f"/id/{key[0]}-{key[1]}/handle/0/routes", after[key]))
            else:
                ops.append(("DELETE", f"/id/{before[key]['@id']}", None))
        o, n = old.get(app), new.get(app)
        o_cert = o.cert.fingerprint if o is not None and o.cert is not None and cert_entry_exists(o) else None
        n_cert = n.cert.fingerprint if n is not None and n.cert is not None and cert_entry_exists(n) else None
        if o_cert != n_cert:
            if n is None or n_cert is None:  # (n_cert is None whenever n is)
                ops.append(("DELETE", f"/id/cert-{app}", None))
            elif o_cert is not None:
                ops.append(("PATCH", f"/id/cert-{app}", cert_entry(n)))
            elif had_certs:
                ops.append(("POST", "/config/apps/tls/certificates/load_pem", cert_entry(n)))
            else:
                return None
    return ops


def cert_entry_exists(route: Route) -> bool:
    return route.cert is not None and bool(route.https)
