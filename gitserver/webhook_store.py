"""A webhook's settings and its delivery log: what the receiving side (webhooks.py) and the deploy worker
(webhook_deploy.py) both read and write.

Per app: `repo` and `api` (the API base URL commit statuses go to: github.py) are properties; `secret` and
`token` live in a 0600 file and are never shown or logged. The
delivery log keeps the last DELIVERY_LOG_SIZE answers (refused entries leave it first); deduplication has
its own record (`webhooks/APP/seen`), kept for DEDUPE_SECONDS.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pushdock.errors import UsageError
from pushdock.state import atomic_write, validate_app_name

if TYPE_CHECKING:
    from pathlib import Path

    from pushdock.context import Context

DELIVERY_LOG_SIZE = 100
DEDUPE_SECONDS = 7 * 24 * 3600
SETTINGS = ("secret", "repo", "token", "api")


# -- per-app webhook settings ----------------------------------------------------------------------------
def _secrets_path(ctx: Context, app: str) -> Path:
    return ctx.state.path("keys", "webhooks", f"{validate_app_name(app)}.json")


def _secrets(ctx: Context, app: str) -> dict[str, str]:
    try:
        return dict(json.loads(_secrets_path(ctx, app).read_text()))
    except FileNotFoundError:
        return {}


def normalise_repo(url: str) -> str:
    """The form repository URLs are compared in: lower case, no trailing `/` or `.git`."""
    return url.strip().lower().rstrip("/").removesuffix(".git")


def set_setting(ctx: Context, app: str, what: str, value: str) -> None:
    """`webhooks:set APP secret|repo|token VALUE` (an empty VALUE unsets it)."""
    if what not in SETTINGS:
        raise UsageError(f"unknown webhook setting {what!r}: use {', '.join(SETTINGS)}")
    value = value.strip()
    if what == "api":
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
                raise UsageError("api must be the repository host's API base URL: https://api.github.com, "
                                 "https://HOST/api/v3 (GitHub Enterprise)")
            ctx.state.set("webhooks", app, "api", value.rstrip("/"))
        else:
            ctx.state.delete("webhooks", app, "api")
        return
    if what == "repo":
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
                raise UsageError("repo must be the repository's clone URL: https://HOST/OWNER/NAME.git "
                                 "(no credentials: use `webhooks:set APP token`)")
            ctx.state.set("webhooks", app, "repo", value)
        else:
            ctx.state.delete("webhooks", app, "repo")
        return
    if what == "secret" and value and len(value) < 16:
        raise UsageError("the secret must be at least 16 characters (try: openssl rand -hex 32)")
    with ctx.state.global_lock("webhook-secrets"):
        data = _secrets(ctx, app)
        if value:
            data[what] = value
        else:
            data.pop(what, None)
        atomic_write(_secrets_path(ctx, app), json.dumps(data), mode=0o600)


def get_setting(ctx: Context, app: str, what: str) -> str | None:
    if what in ("repo", "api"):
        return ctx.state.get("webhooks", app, what)
    return _secrets(ctx, app).get(what) or None


def forget_secrets(ctx: Context, app: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _secrets_path(ctx, app).unlink()


def rename_secrets(ctx: Context, old: str, new: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rename(_secrets_path(ctx, old), _secrets_path(ctx, new))


# -- verification ----------------------------------------------------------------------------------------
# -- the delivery log --------------------------------------------------------------------------------------
def deliveries(ctx: Context, app: str) -> list[dict[str, Any]]:
    """The app's recent deliveries, oldest first."""
    return list(ctx.state.get_json("webhooks", app, "deliveries", []))


def update_delivery(ctx: Context, app: str, delivery: str, **fields: Any) -> None:
    """Change the entry of an accepted delivery (its outcome, as its deploy goes on)."""
    with ctx.state.global_lock("webhook-deliveries"):
        log = deliveries(ctx, app)
        for entry in reversed(log):
            if entry.get("delivery") == delivery and entry.get("accepted"):
                entry.update(fields)
                break
        else:
            return
        ctx.state.set_json("webhooks", app, "deliveries", log)


def append(ctx: Context, app: str, entry: dict[str, Any], body_key: str | None = None) -> dict[str, Any] | None:
    """Add `entry`. If it would be accepted but an accepted delivery of the last DEDUPE_SECONDS had its id
    (or its signed body: `body_key`), it is added as a duplicate instead, and that earlier entry is returned."""
    with ctx.state.global_lock("webhook-deliveries"):
        log = deliveries(ctx, app)
        earlier = None
        if entry.get("accepted"):
            now = entry.setdefault("time", time.time())
            seen = {k: t for k, t in ctx.state.get_json("webhooks", app, "seen", {}).items()
                    if isinstance(t, (int, float)) and t > now - DEDUPE_SECONDS}
            keys = [f"id:{entry['delivery']}", *([body_key] if body_key else [])]
            first = next((seen[k] for k in keys if k in seen), None)
            if first is not None or any(e.get("delivery") == entry["delivery"] and e.get("accepted") for e in log):
                earlier = next((e for e in reversed(log) if e.get("accepted") and (
                    e.get("delivery") == entry["delivery"] or e.get("time") == first)), None) or \
                    {"outcome": f"accepted {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(first or 0))} UTC"}
                entry.update(accepted=False, status=200, outcome="duplicate delivery ignored")
            else:
                ctx.state.set_json("webhooks", app, "seen", {**seen, **dict.fromkeys(keys, now)})
        ctx.state.set_json("webhooks", app, "deliveries", _trim([*log, entry]))
    return earlier


def _trim(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log cut to DELIVERY_LOG_SIZE, refused entries first (a flood of them cannot hide accepted ones)."""
    while len(log) > DELIVERY_LOG_SIZE:
        drop = next((i for i, e in enumerate(log[:-1]) if not e.get("accepted")), 0)
        log = log[:drop] + log[drop + 1:]
    return log


# -- the HTTP handler --------------------------------------------------------------------------------------
