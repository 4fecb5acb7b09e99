"""From what the pipeline knows (app, domains, upstreams) and the app's routing settings to a Route.

`resolve` reads ports, the certificate and `https-redirect` from state and validates everything, so
a proxy never writes anything for a bad input. `change` is how commands alter a routing setting:
write it, re-route the app, and put the old value back if the proxy refused the result.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from proxies import certs, ports
from proxies.domains import validate_domains
from proxies.model import Route
from pushdock import proxy_tuning
from pushdock.errors import UsageError
from pushdock.state import validate_app_name

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.routing import Upstream

MAX_UPSTREAMS = 200
WEBROOTS = "acme-challenge"  # a TRAVERSED folder of the data dir (pushdock/state.py)


def resolve(ctx: Context, app: str, domains: list[str], upstreams: list[Upstream]) -> Route:
    """The app's full route; UsageError for a bad domain or upstream (nothing is written)."""
    validate_app_name(app)
    names = tuple(validate_domains(domains))
    if len(upstreams) > MAX_UPSTREAMS:
        raise UsageError(f"too many upstreams ({len(upstreams)}): at most {MAX_UPSTREAMS}")
    for u in upstreams:
        upstream_address(u)
    cert = certs.ref(ctx, app)
    listeners = tuple(sorted({m.listener for m in ports.effective(ctx, app, tls=cert is not None)}))
    https = [li.port for li in listeners if li.scheme == "https"]
    redirect = https[0] if https and ctx.state.get("proxy", app, "https-redirect") == "true" else None
    challenge = str(webroot(ctx, app)) if ctx.state.get("letsencrypt", app, "enabled") == "true" else None
    tuning = proxy_tuning.check_values(proxy_tuning.effective(ctx.state, app))  # stored values, checked again
    return Route(app=app, domains=names, upstreams=tuple(sorted(set(upstreams))), listeners=listeners,
                 cert=cert, redirect_to=redirect, health_path=_health_path(ctx, app), challenge_root=challenge,
                 tuning=tuple(tuning.items()))


def webroot(ctx: Context, app: str) -> Path:
    """Where letsencrypt writes the app's HTTP-01 answers (`.well-known/acme-challenge/TOKEN` under it).

    Outside the private data folders: nginx's workers (another user) read it. Answers are public anyway.
    """
    return ctx.state.path(WEBROOTS, validate_app_name(app))


def install_cert(ctx: Context, app: str, crt: bytes, key: bytes, summary: str) -> certs.CertInfo:
    """Check, store and serve the app's certificate (`certs:add`, `certs:generate`, letsencrypt): the
    old one is put back if the proxy refuses the new one."""
    meta = certs.check_pair(crt, key)  # before anything is written
    saved = certs.snapshot(ctx, app)

    def write() -> Callable[[], None]:
        certs.store(ctx, app, crt, key)
        return lambda: certs.restore(ctx, app, saved)

    change(ctx, app, write, summary)
    return meta


def upstream_address(u: Upstream) -> str:
    """`host:port` (IPv6 in brackets) of an upstream; UsageError for anything that is not one."""
    port = u.port
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"invalid upstream port {port!r}")
    if ":" in u.host and re.fullmatch(r"[0-9A-Fa-f:.]{2,45}", u.host):
        return f"[{u.host}]:{port}"
    if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", u.host):
        raise UsageError(f"invalid upstream host {u.host!r}")
    return f"{u.host}:{port}"


def _health_path(ctx: Context, app: str) -> str | None:
    """The path of the web process's first HTTP check in app.json, for proxies that probe upstreams."""
    current = ctx.state.current_release(app)
    for check in (getattr(current, "checks", None) or {}).get("web", []):
        path = check.get("path") if isinstance(check, dict) else None
        if isinstance(path, str) and path.startswith("/") and len(path) < 200 and "{" not in path:
            return path
    return None


def reroute(ctx: Context, app: str) -> None:
    """Re-apply a deployed app's routes (settings changed); an app never deployed has none yet."""
    from hooks import pipeline  # noqa: PLC0415 -- start-up: loads only when this path runs

    if ctx.state.current_release(app) is not None:
        pipeline.reroute(ctx, app)


@contextlib.contextmanager
def restoring(ctx: Context, props: list[tuple[str, str, str]]) -> Iterator[None]:
    """Put the given properties back as they were if the body fails (the proxy refused the change)."""
    saved = {p: ctx.state.get(*p) for p in props}
    try:
        yield
    except BaseException:
        for (plugin, app, prop), value in saved.items():
            if value is None:
                ctx.state.delete(plugin, app, prop)
            else:
                ctx.state.set(plugin, app, prop, value)
        raise


def change(ctx: Context, app: str, write: Callable[[], Callable[[], None] | None], summary: str, *,
           props: list[tuple[str, str, str]] | None = None) -> None:
    """Under the app's lock: `write()` the new setting (it may return an undo), re-route the app, and
    undo (restore `props`, call the undo) if that fails; then announce the settings change."""
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout), restoring(ctx, props or []):
        undo = write()
        try:
            reroute(ctx, app)
        except BaseException:
            if undo is not None:
                undo()
            raise
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=summary)
