"""Port mappings `scheme:host:container` (Dokku's format): which ports the proxy serves an app on.

Without mappings of its own an app gets `http:PROXY_PORT:WEB_PORT`, plus `https:PROXY_TLS_PORT:WEB_PORT`
once it has a certificate, and, as in Dokku, `http:P:P` for the port P its Dockerfile EXPOSEs (when P is
the web port; PUSHDOCK_EXPOSE_PORTS=0 turns this off). The container port must be the web process's port
(`PORT`, default 5000): schedulers publish that one port, and every mapping routes to it, so other EXPOSEd
ports are reported, not routed. An `https` mapping is inactive until the app has a certificate. Stored as
`ports/APP/map` (JSON list of `scheme:host:container`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxies.model import SCHEMES, Listener
from pushdock.errors import Conflict, NotFound, UsageError

if TYPE_CHECKING:
    from pushdock.context import Context

MAPPING = re.compile(r"\A([a-z]+):(\d{1,5}):(\d{1,5})\Z")
DEFAULT_WEB_PORT = 5000
MAX_MAPPINGS = 20


@dataclass(frozen=True, order=True)
class PortMap:
    scheme: str
    host: int
    container: int

    def __str__(self) -> str:
        return f"{self.scheme}:{self.host}:{self.container}"

    @property
    def listener(self) -> Listener:
        return Listener(self.scheme, self.host)


def parse(raw: str) -> PortMap:
    """`http:80:5000` -> PortMap; UsageError for anything else."""
    m = MAPPING.match(str(raw).strip().lower())
    hint = "use scheme:host:container, e.g. http:80:5000 or https:443:5000"
    if not m:
        raise UsageError(f"invalid port mapping {str(raw)[:40]!r}: {hint}")
    scheme, host, container = m.group(1), int(m.group(2)), int(m.group(3))
    if scheme not in SCHEMES:
        raise UsageError(f"invalid port mapping {raw!r}: scheme must be http or https")
    for port in (host, container):
        if not 0 < port < 65536:
            raise UsageError(f"invalid port mapping {raw!r}: ports are 1-65535")
    return PortMap(scheme, host, container)


def parse_all(raws: Iterable[str]) -> list[PortMap]:
    maps = list(dict.fromkeys(parse(r) for r in raws))
    by_host: dict[int, PortMap] = {}
    for m in maps:
        if m.host in by_host:
            raise UsageError(f"port {m.host} is mapped twice ({by_host[m.host]} and {m})")
        by_host[m.host] = m
    if len(maps) > MAX_MAPPINGS:
        raise UsageError(f"too many port mappings ({len(maps)}): at most {MAX_MAPPINGS}")
    return sorted(maps, key=lambda m: m.host)


def explicit(ctx: Context, app: str) -> list[PortMap] | None:
    """The app's own mappings, None when it uses the defaults."""
    raw = ctx.state.get_json("ports", app, "map")
    return None if raw is None else [parse(r) for r in raw]


def web_port(ctx: Context, app: str) -> int:
    current = ctx.state.current_release(app)
    return current.web_port if current is not None else DEFAULT_WEB_PORT


def defaults(ctx: Context, app: str, *, tls: bool) -> list[PortMap]:
    port = web_port(ctx, app)
    maps = [PortMap("http", ctx.settings.proxy_port, port)]
    if tls:
        maps.append(PortMap("https", ctx.settings.proxy_tls_port, port))
    return maps + [m for m, why in exposed(ctx, app) if why is None]


def exposed(ctx: Context, app: str) -> list[tuple[PortMap, str | None]]:
    """Dokku's `http:P:P` for each port P the current release's image EXPOSEs, with why it is not served
    (None: it is). Only the web port can be: it is the one port schedulers publish."""
    current = ctx.state.current_release(app)
    if current is None or not current.exposed:
        return []
    s = ctx.settings
    fixed = {s.proxy_port: "it is the proxy's http port already", s.proxy_tls_port: "it is the proxy's https port",
             s.ssh_port: "it is pushdock's SSH port", s.http_port: "it is pushdock's HTTP port"}
    out: list[tuple[PortMap, str | None]] = []
    for port in current.exposed:
        why = None
        if not s.expose_ports:
            why = "PUSHDOCK_EXPOSE_PORTS is off"
        elif port != current.web_port:
            why = f"not the web port ({current.web_port}): only the web port is routed"
        elif port in fixed:
            why = fixed[port]
        elif (other := _https_elsewhere(ctx, app, port)) is not None:
            why = f"app {other} serves https on it"
        out.append((PortMap("http", port, port), why))
    return out


def effective(ctx: Context, app: str, *, tls: bool) -> list[PortMap]:
    """What the proxy serves (https ones only with a certificate)."""
    maps = explicit(ctx, app)
    if maps is None:
        return defaults(ctx, app, tls=tls)
    return [m for m in maps if m.scheme == "http" or tls]


def plan(ctx: Context, app: str, verb: str, raws: list[str]) -> list[PortMap] | None:
    """The app's mappings after `ports:VERB APP ...` (None = back to the defaults); raises first."""
    from proxies import certs  # noqa: PLC0415 -- start-up: loads only when this path runs

    if verb == "clear":
        return None
    current = explicit(ctx, app)
    base = current if current is not None else defaults(ctx, app, tls=certs.exists(ctx, app))
    if verb == "remove":
        after = list(base)
        for raw in raws:
            if raw.isdigit():
                hit = [m for m in after if m.host == int(raw)]
            else:
                hit = [m for m in after if m == parse(raw)]
            if not hit:
                raise NotFound(f"app {app} has no port mapping {raw}")
            after = [m for m in after if m not in hit]
        if not after:
            raise UsageError(f"app {app} would have no port left (ports:clear restores the defaults)")
        return after
    given = parse_all(raws)
    if verb == "add":
        kept = [m for m in base if m.host not in {g.host for g in given}]
        after = parse_all([str(m) for m in kept + given])
    elif verb == "set":
        after = given
    else:
        raise UsageError(f"unknown ports verb {verb!r}")
    check(ctx, app, after)
    ctx.proxy().check_ports(ctx, sorted({m.host for m in after} - {m.host for m in base}))
    return after


def check(ctx: Context, app: str, maps: list[PortMap]) -> None:
    """Conflict for a port pushdock itself uses or another app serves with the other scheme; UsageError
    for a container port that is not the web process's. (Whether another program holds a port is the
    proxy's to say: `plan` asks it, and every commit checks again under the proxy's lock.)"""
    own = {ctx.settings.ssh_port: "SSH", ctx.settings.http_port: "HTTP"}
    fixed = {ctx.settings.proxy_port: "http", ctx.settings.proxy_tls_port: "https"}
    web = web_port(ctx, app)
    for m in maps:
        if m.host in own:
            raise Conflict(f"port {m.host} is pushdock's own {own[m.host]} port")
        if fixed.get(m.host, m.scheme) != m.scheme:
            raise Conflict(f"port {m.host} is the proxy's {fixed[m.host]} port: it cannot serve {m.scheme}")
        if m.container != web:
            raise UsageError(f"container port {m.container} is not the web port of {app} ({web}): "
                             "pushdock publishes only PORT; map to it or change PORT")
    for other in ctx.state.list_apps():
        if other == app:
            continue
        for o in explicit(ctx, other) or []:
            for m in maps:
                if o.host == m.host and o.scheme != m.scheme:
                    raise Conflict(f"port {m.host} serves {o.scheme} for app {other}: it cannot serve {m.scheme}")


def _https_elsewhere(ctx: Context, app: str, port: int) -> str | None:
    """Another app that serves https on `port` by its own mappings (the same port cannot serve http), or None."""
    for other in ctx.state.list_apps():
        if other != app and any(o.host == port and o.scheme == "https" for o in explicit(ctx, other) or []):
            return other
    return None


def report(ctx: Context, app: str) -> dict[str, str]:
    from proxies import certs  # noqa: PLC0415 -- start-up: loads only when this path runs

    tls = certs.exists(ctx, app)
    own = explicit(ctx, app)
    active = effective(ctx, app, tls=tls)
    inactive = [m for m in (own or []) if m not in active]
    from_expose = exposed(ctx, app)
    served = {m for m, why in from_expose if why is None}
    if own is not None:
        sources = [f"{m} ports:set" for m in own]
    else:
        sources = [f"{m} {'dockerfile EXPOSE' if m in served else 'default'}" for m in defaults(ctx, app, tls=tls)]
    return {
        "mappings": " ".join(map(str, own if own is not None else defaults(ctx, app, tls=tls))),
        "source": "ports:set" if own is not None else "defaults",
        "sources": ", ".join(sources),
        "active": " ".join(map(str, active)),
        "inactive (no certificate)": " ".join(map(str, inactive)),
        "exposed, not mapped": ", ".join(f"{m.container} ({why})" for m, why in from_expose if why is not None),
        "web port": str(web_port(ctx, app)),
    }
