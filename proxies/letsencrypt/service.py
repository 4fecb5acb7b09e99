"""letsencrypt's per-app state and its verbs: enable, disable, renew, revoke, list, report.

State: `data/letsencrypt/APP/{enabled,fingerprint,renewal}` (fingerprint: the certificate it issued, so
`disable` never removes one added by `certs:add`); the account under `data/letsencrypt/--global/`.
Certificates are installed through `install_cert`, the path of `certs:add`. Each issue or renewal
attempt is an event (`letsencrypt:issue`, `letsencrypt:renew`) with its result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

from proxies import certs
from proxies.letsencrypt import client
from proxies.routes import change, install_cert, webroot
from pushdock.errors import PushdockError, UsageError

if TYPE_CHECKING:
    from pushdock.context import Context

PLUGIN = "letsencrypt"
PROXIES = ("nginx", "caddy")  # the proxies that serve HTTP-01 answers from a webroot
RENEW_WITHIN = 30 * 86400  # renew a certificate this close to its expiry
DAY = 86400
MAX_BACKOFF_DAYS = 7


def enabled(ctx: Context, app: str) -> bool:
    return ctx.state.get(PLUGIN, app, "enabled") == "true"


def domains(ctx: Context, app: str) -> list[str]:
    """The names HTTP-01 can prove: every domain of the app but wildcards."""
    return [d for d in ctx.domains(app) if not d.startswith("*.")]


def _check_can_issue(ctx: Context, app: str) -> None:
    proxy = ctx.proxy().name
    if proxy not in PROXIES:
        raise UsageError(f"letsencrypt answers HTTP-01 through nginx or caddy, not {proxy}",
                         hint="proxy:set --global nginx")
    if ctx.state.current_release(app) is None:
        raise UsageError(f"app {app} is not deployed: the CA must reach it over HTTP first")


def _set_enabled(ctx: Context, app: str, on: bool, summary: str) -> None:
    prop = (PLUGIN, app, "enabled")
    change(ctx, app, lambda: ctx.state.set(*prop, "true") if on else ctx.state.delete(*prop), summary, props=[prop])


def enable(ctx: Context, app: str) -> certs.CertInfo:
    """Serve the app's challenge path, then order and install a certificate for its domains. If the order
    fails, the app is as it was (not enabled, no challenge path)."""
    _check_can_issue(ctx, app)
    was = enabled(ctx, app)
    if not was:
        _set_enabled(ctx, app, True, "letsencrypt:enable")
    try:
        return _issue(ctx, app, "letsencrypt:issue")
    except BaseException:
        if not was:
            _set_enabled(ctx, app, False, "letsencrypt:enable (undone: the order failed)")
        raise


def _issue(ctx: Context, app: str, action: str) -> certs.CertInfo:
    started = time.time()
    names = domains(ctx, app)
    try:
        crt, key = client.issue(ctx, names, webroot(ctx, app))
        meta = install_cert(ctx, app, crt, key, action)
    except PushdockError as e:
        _record(ctx, app, ok=False)
        ctx.event(action, app=app, result="failed", started=started, reason=e.message)
        raise
    ctx.state.set(PLUGIN, app, "fingerprint", meta.fingerprint)
    _record(ctx, app, ok=True)
    ctx.event(action, app=app, started=started, domains=" ".join(names), expires=int(meta.not_after))
    return meta


def _record(ctx: Context, app: str, *, ok: bool) -> None:
    now = time.time()
    failures = 0 if ok else int(_renewal(ctx, app).get("failures", 0)) + 1
    backoff = min(2 ** (failures - 1), MAX_BACKOFF_DAYS) * DAY if failures else 0
    ctx.state.set_json(PLUGIN, app, "renewal", {"last_attempt": now, "last_result": "ok" if ok else "failed",
                                                "failures": failures, "next_attempt": now + backoff})


def _renewal(ctx: Context, app: str) -> dict[str, float | str]:
    raw = ctx.state.get_json(PLUGIN, app, "renewal", {})
    return raw if isinstance(raw, dict) else {}


def ours(ctx: Context, app: str) -> certs.CertInfo | None:
    """The app's certificate if letsencrypt issued it (not one from certs:add)."""
    meta = certs.info(ctx, app)
    if meta is None or meta.fingerprint != ctx.state.get(PLUGIN, app, "fingerprint"):
        return None
    return meta


def disable(ctx: Context, app: str) -> bool:
    """Stop renewing and serving the challenge path; remove the certificate it issued (True if one was)."""
    if not enabled(ctx, app):
        raise UsageError(f"letsencrypt is not enabled for {app}")
    return _drop(ctx, app, "letsencrypt:disable")


def _drop(ctx: Context, app: str, summary: str) -> bool:
    mine = ours(ctx, app) is not None
    saved = certs.snapshot(ctx, app)
    prop = (PLUGIN, app, "enabled")

    def write() -> Callable[[], None]:
        ctx.state.delete(*prop)
        if mine:
            certs.remove(ctx, app)
        return lambda: certs.restore(ctx, app, saved)

    change(ctx, app, write, summary, props=[prop])
    for name in ("fingerprint", "renewal"):
        ctx.state.delete(PLUGIN, app, name)
    return mine


def revoke(ctx: Context, app: str) -> None:
    """Revoke the certificate letsencrypt issued, then stop serving it (and stop renewing)."""
    meta = ours(ctx, app)
    if meta is None:
        raise UsageError(f"app {app} has no certificate from letsencrypt")
    crt = certs.snapshot(ctx, app)["server.crt"] or b""
    started = time.time()
    client.revoke(ctx, crt, " ".join(meta.names))
    ctx.event("letsencrypt:revoke", app=app, started=started, fingerprint=meta.fingerprint)
    _drop(ctx, app, "letsencrypt:revoke")


def due(ctx: Context, app: str, now: float, *, backoff: bool) -> bool:
    """Whether the app's certificate should be renewed now (within 30 days of expiry, or none)."""
    if not enabled(ctx, app):
        return False
    meta = ours(ctx, app)
    if meta is not None and meta.not_after - now > RENEW_WITHIN:
        return False
    return not backoff or float(_renewal(ctx, app).get("next_attempt", 0)) <= now


def renew(ctx: Context, apps: list[str] | None = None, *, backoff: bool = False) -> dict[str, str]:
    """Renew every due certificate (of `apps`, or of every enabled app): app -> "renewed" or the error."""
    now = time.time()
    out: dict[str, str] = {}
    for app in apps if apps is not None else ctx.state.list_apps():
        try:
            if not due(ctx, app, now, backoff=backoff):
                continue
            _check_can_issue(ctx, app)
            _issue(ctx, app, "letsencrypt:renew")
            out[app] = "renewed"
        except PushdockError as e:
            logger.warning("certificate not renewed", app=app, reason=e.message)
            out[app] = e.message
    return out


def scheduled_renewal(ctx: Context) -> Callable[[], object]:
    """The timer's daily job: renew what is due, honouring each app's backoff after failures."""
    return lambda: renew(ctx, backoff=True)


@dataclass(frozen=True)
class Row:
    app: str
    domains: str
    expiry: str
    days_left: int | None


def rows(ctx: Context, apps: list[str]) -> list[Row]:
    out = []
    for app in apps:
        if not enabled(ctx, app):
            continue
        meta = ours(ctx, app)
        left = None if meta is None else int((meta.not_after - time.time()) // DAY)
        out.append(Row(app, " ".join(meta.names if meta else domains(ctx, app)),
                       "" if meta is None else certs.day(meta.not_after), left))
    return out


def report(ctx: Context, app: str) -> dict[str, str]:
    acct = client.account(ctx)
    meta = ours(ctx, app)
    r = _renewal(ctx, app)
    left = "" if meta is None else str(int((meta.not_after - time.time()) // DAY))
    return {
        "enabled": "true" if enabled(ctx, app) else "false",
        "server": acct.server,
        "email": acct.email or "",
        "domains": " ".join(meta.names if meta else domains(ctx, app)),
        "expires": "" if meta is None else certs.day(meta.not_after),
        "days left": left,
        "last attempt": "" if "last_attempt" not in r else certs.day(float(r["last_attempt"])),
        "last result": str(r.get("last_result", "")),
        "failures": str(r.get("failures", 0)),
    }
