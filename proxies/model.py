"""What every proxy is asked to serve: one Route per app, and the table of routes a proxy applied.

A Route is proxy-independent and fully resolved (domains validated, listeners from `ports:*` and the
certificate, redirect); nginx, caddy and traefik each render it their own way. The table is the
proxy's bookkeeping of what is live (JSON, one file per proxy), read and written under its lock.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushdock.errors import Conflict, PushdockError
from pushdock.routing import Upstream
from pushdock.state import atomic_write

SCHEMES = ("http", "https")


@dataclass(frozen=True, order=True)
class Listener:
    """A port the proxy listens on for the app, and how (`http` or `https`)."""

    scheme: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}:{self.port}"


@dataclass(frozen=True)
class CertRef:
    """The app's certificate as stored by `certs:*`: where its PEM files are and what it is."""

    crt: str  # PEM: the certificate, then its chain
    key: str  # PEM private key (mode 0600)
    fingerprint: str  # sha256 of the leaf: a new certificate is a new route
    names: tuple[str, ...] = ()
    expires: float = 0.0

    def read(self) -> tuple[str, str]:
        """(certificate PEM, key PEM)."""
        try:
            return Path(self.crt).read_text(), Path(self.key).read_text()
        except OSError as e:
            raise PushdockError(f"the certificate files are unreadable: {e.strerror}") from e


@dataclass(frozen=True)
class Route:
    """Everything a proxy needs to serve one app."""

    app: str
    domains: tuple[str, ...]
    upstreams: tuple[Upstream, ...]  # none: the app is stopped, its domains answer 503
    listeners: tuple[Listener, ...]
    cert: CertRef | None = None
    redirect_to: int | None = None  # HTTP listeners answer 301 to https on this port
    health_path: str | None = None  # for proxies that check upstreams themselves (traefik)
    # letsencrypt: HTTP listeners serve /.well-known/acme-challenge/ from this webroot (before any redirect)
    challenge_root: str | None = None
    tuning: tuple[tuple[str, str], ...] = ()  # `proxy:set APP KEY VALUE` (pushdock/proxy_tuning.py), checked

    @property
    def tune(self) -> dict[str, str]:
        return dict(self.tuning)

    @property
    def http(self) -> tuple[Listener, ...]:
        return tuple(li for li in self.listeners if li.scheme == "http")

    @property
    def https(self) -> tuple[Listener, ...]:
        return tuple(li for li in self.listeners if li.scheme == "https")

    def with_upstreams(self, upstreams: tuple[Upstream, ...]) -> Route:
        """`dataclasses.replace(self, upstreams=upstreams)` at a sixth of its cost (the fields are copied, not
        passed through __init__ again): the stable view of 1000 routes is made in a fresh process."""
        copy = object.__new__(Route)
        copy.__dict__.update(self.__dict__)
        copy.__dict__["upstreams"] = upstreams
        return copy

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app, "domains": list(self.domains),
            "upstreams": [[u.host, u.port] for u in self.upstreams],
            "listeners": [[li.scheme, li.port] for li in self.listeners],
            "cert": None if self.cert is None else {
                "crt": self.cert.crt, "key": self.cert.key, "fingerprint": self.cert.fingerprint,
                "names": list(self.cert.names), "expires": self.cert.expires},
            "redirect_to": self.redirect_to, "health_path": self.health_path,
            "challenge_root": self.challenge_root,
            **({"tuning": dict(self.tuning)} if self.tuning else {}),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Route:
        cert = raw.get("cert")
        return cls(
            app=raw["app"], domains=tuple(raw["domains"]),
            upstreams=tuple([Upstream(h, int(p)) for h, p in raw["upstreams"]]),
            listeners=_listeners(raw["listeners"]),
            cert=None if cert is None else CertRef(cert["crt"], cert["key"], cert["fingerprint"],
                                                    tuple(cert.get("names", ())), float(cert.get("expires", 0))),
            redirect_to=raw.get("redirect_to"), health_path=raw.get("health_path"),
            challenge_root=raw.get("challenge_root"),
            tuning=tuple(sorted((raw.get("tuning") or {}).items())) if raw.get("tuning") else (),
        )


# Listeners as parsed, shared: a table of 1000 apps holds a handful of distinct ones (mostly `http:PROXY_PORT`)
_LISTENERS: dict[tuple[tuple[str, int], ...], tuple[Listener, ...]] = {}


def _listeners(raw: list[list[Any]]) -> tuple[Listener, ...]:
    key = tuple([(str(s), int(p)) for s, p in raw])
    hit = _LISTENERS.get(key)
    if hit is None:
        hit = tuple([Listener(s, p) for s, p in key])
        if len(_LISTENERS) < 256:
            _LISTENERS[key] = hit
    return hit


Table = dict[str, Route]


# The table parsed or saved last, by file identity: a change at 1000 apps must not re-parse 1000 routes (atomic
# writes give every version a new inode, so a stale entry can never match); with it, each route's JSON line by app
# (a table of 1000 apps is saved at every change: only the changed route is serialized). One table per file is
# kept, never more: serve re-reads every table each time a push changes it.
Texts = dict[str, tuple[Route, str]]  # app -> (the route object, its line)
_cache: dict[Path, tuple[tuple[int, int, int], Table, Texts]] = {}


def _identity(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def _cached(path: Path) -> tuple[tuple[int, int, int], Table | None] | None:
    """The file's identity and the table cached for it if it is still that file's (None: no file)."""
    try:
        key = _identity(path)
    except FileNotFoundError:
        return None
    hit = _cache.get(path)
    return key, (hit[1] if hit is not None and hit[0] == key else None)


def load_table(path: Path) -> Table:
    """The routes a proxy applied, by app ({} if none yet)."""
    found = _cached(path)
    if found is None:
        return {}
    key, table = found
    if table is None:
        table, texts = _parse(path.read_text())
        _cache[path] = (key, table, texts)
    return dict(table)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: for building 1000 routes, acyclic values that all stay alive. Each of
    the ~30 collections their allocations trigger walks the young objects for nothing, and a full one every
    object of the process (in a fresh interpreter, not frozen as serve's zygote freezes its workers' modules,
    that was 20 ms of a 50 ms change)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _parse(text: str) -> tuple[Table, Texts]:
    """A saved table: one route per line (as save_table writes it; each line's text is kept, so a process that
    changes one route writes the others back without serializing them), else any JSON object."""
    with collector_paused():
        return _decode(text)


def _decode(text: str) -> tuple[Table, Texts]:
    raw = json.loads(text)  # one decode of the whole file: 2000 small ones cost 5x more
    lines = text.split("\n")
    table = {app: Route.from_json(r) for app, r in raw.items()}
    if lines[0] != "{" or lines[-2:] != ["}", ""]:
        return table, {}
    entries = [e for line in lines[1:-2] if (e := line.removesuffix(","))]
    if len(entries) != len(table):  # not one route per line (written by hand): nothing kept but the routes
        return table, {}
    texts: Texts = {}
    for entry, (app, route) in zip(entries, table.items(), strict=True):
        if not entry.startswith(_key(app)):
            return table, {}
        texts[app] = (route, entry)
    return table, texts


def _key(app: str) -> str:
    """The start of the app's line: `"APP":` (app names need no escaping; json.dumps for anything else)."""
    if app.isascii() and app.isprintable() and '"' not in app and "\\" not in app:
        return f'"{app}":'
    return json.dumps(app) + ":"


def load_routes(path: Path, apps: set[str]) -> Table:
    """The routes of `apps` in the table at `path` (those it has), decoding only their lines: a process that
    changes one route of 1000 does not parse the 999 others (the whole table is parsed if it is not one route
    per line)."""
    found = _cached(path)
    if found is None:
        return {}
    if (table := found[1]) is not None:
        return {a: table[a] for a in apps if a in table}
    text = path.read_text()
    out: Table = {}
    if _one_per_line(text):
        for app in apps:
            start = text.find("\n" + _key(app))  # lines are compact JSON: a newline only ever starts a route
            if start < 0:
                continue
            line = text[start + 1:text.index("\n", start + 1)].removesuffix(",")
            try:
                [(name, raw)] = json.loads("{" + line + "}").items()
                if isinstance(raw, dict) and name == app == raw.get("app"):
                    out[app] = Route.from_json(raw)
                    continue
            except (ValueError, KeyError, TypeError):
                pass
            break  # not a table as save_table writes it (indented by hand): parse it whole
        else:
            return out
    return {a: r for a, r in _parse(text)[0].items() if a in apps}


def _one_per_line(text: str) -> bool:
    """Whether `text` looks as save_table writes it: `{`, then compact `"APP":{"app":...}` lines, then `}`."""
    if text == "{\n}\n":
        return True
    head = text[2:text.find("\n", 2)]
    return text.startswith('{\n"') and text.endswith("}\n}\n") and '":{"app":"' in head


def _route_json(app: str, route: Route, known: Texts) -> str:
    hit = known.get(app)
    if hit is not None and hit[0] is route:
        return hit[1]
    return _key(app) + json.dumps(route.to_json(), separators=(",", ":"))


def save_table(path: Path, table: Table) -> None:
    """Write the table, one route per line (still one JSON object: any JSON reader reads it)."""
    hit = _cache.get(path)
    known = hit[2] if hit is not None else {}
    texts = {app: (table[app], _route_json(app, table[app], known)) for app in sorted(table)}
    body = ",\n".join(text for _, text in texts.values())
    atomic_write(path, "{\n" + body + ("\n" if body else "") + "}\n")
    _cache[path] = (_identity(path), dict(table), texts)


def conflict(table: Table, route: Route) -> Conflict | None:
    """Why `route` cannot join `table` (a domain another app serves, a port another app uses with the
    other scheme), or None."""
    names = set(route.domains)
    ports = {li.port: li.scheme for li in route.listeners}
    for other, r in table.items():
        if other == route.app:
            continue
        shared = names.intersection(r.domains)
        if shared:
            return Conflict(f"domain {min(shared)} is already routed to app {other}",
                            hint=f"an admin can free it: domains:remove {other} {min(shared)}")
        for li in r.listeners:
            if ports.get(li.port, li.scheme) != li.scheme:
                return Conflict(f"port {li.port} serves {li.scheme} for app {other}: "
                                f"it cannot serve {ports[li.port]} for {route.app}")
    return None


def ports_in_use(table: Table, default: Listener) -> list[Listener]:
    """One listener per port some route listens on, plus the default HTTP listener; sorted by port."""
    by_port = {default.port: default} | {li.port: li for r in table.values() for li in r.listeners}
    return [by_port[p] for p in sorted(by_port)]
