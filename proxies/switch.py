"""Whole-host proxy operations: switch the proxy type, rebuild every app's routes."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from proxies import listen, steer
from pushdock.errors import PushdockError, UsageError
from pushdock.state import GLOBAL

HAND_OVER = 0.2  # seconds between steering new connections to the new proxy and stopping the old one

if TYPE_CHECKING:
    from pushdock.context import Context


def rebuild_all(ctx: Context, proxy: Any | None = None) -> list[str]:
    """Re-route every deployed app through `proxy` (default: the selected one) in one commit; per-app
    failures. Like pipeline.reroute_all, but apps never deployed get no route (nothing to serve yet)."""
    from hooks import pipeline  # noqa: PLC0415 -- start-up: loads only when this path runs

    proxy = proxy or ctx.proxy()
    deployed = [app for app in ctx.state.list_apps() if ctx.state.current_release(app) is not None]
    failures = []
    with proxy.batch(ctx):
        for app in deployed:
            try:
                pipeline.reroute(ctx, app)
            except PushdockError as e:
                failures.append(f"{app}: {e}")
        for stale in sorted(set(proxy.routes(ctx)) - set(deployed)):  # destroyed while this proxy was off
            proxy.remove(ctx, stale)
    return failures


def select(ctx: Context, name: str) -> str:
    """Make `name` the host's proxy: it starts with every app's routes, then the old one stops.

    Both bind the same ports meanwhile (SO_REUSEPORT), so clients are served throughout. If the new
    proxy cannot serve every app, it is stopped again and the old one keeps serving. Returns the old name.
    """
    registry = ctx.bus.registry("proxies")
    if name not in registry:
        raise UsageError(f"unknown proxy {name!r} (known: {', '.join(sorted(registry))})")
    old, new = ctx.proxy(), registry[name]
    saved = ctx.state.get("proxy", GLOBAL, "selected")
    ctx.state.set("proxy", GLOBAL, "selected", name)
    if old.name == name:
        new.ensure_running(ctx)
        return str(old.name)
    try:
        failures = rebuild_all(ctx, new)
        if failures:
            raise PushdockError(f"{name} could not route {len(failures)} app(s): {failures[0]}")
        new.ensure_running(ctx)  # no app at all: nothing above started it
        if not new.serving(ctx):
            raise PushdockError(f"{name} is not running", hint=_hint(new.report(ctx)))
    except PushdockError:
        if saved is None:
            ctx.state.delete("proxy", GLOBAL, "selected")
        else:
            ctx.state.set("proxy", GLOBAL, "selected", saved)
        with contextlib.suppress(PushdockError, OSError):
            new.stop(ctx)
        raise
    logger.info("proxy switched", old=old.name, new=name)
    listen.migrate_on_close()  # what the old one's sockets queued goes to the new one, not reset
    steered = steer.hand_over(old.pids(ctx), new.pids(ctx))
    if steered:
        time.sleep(HAND_OVER)  # the old one reads the requests of the connections it has already accepted
    try:
        old.stop(ctx)
    finally:
        for pid, port in steered:
            with contextlib.suppress(OSError):
                steer.release(pid, port)
    return str(old.name)


def _hint(report: dict[str, Any]) -> str:
    if report.get("binary", "") is None:
        return f"{report.get('proxy')} is not installed: its configuration files are written, nothing serves them"
    return "see its log in the data dir"
