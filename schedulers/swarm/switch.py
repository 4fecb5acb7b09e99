"""Switching an app's scheduler (`scheduler:set APP selected NAME`) and the default one, with zero downtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from hooks import pipeline
from pushdock.checks import check_settings
from pushdock.errors import PushdockError
from pushdock.state import GLOBAL
from schedulers import engine as eng
from schedulers.swarm import engine as sw
from schedulers.swarm.settings import SCHEDULER, scheduler_value, store

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress


def select(ctx: Context, app: str, value: str, progress: Progress) -> str:
    """Set the app's scheduler; a running app moves now, with zero downtime, or nothing changes.

    The current release is deployed by the new scheduler (blue/green across schedulers: the proxy
    switches once the new instances pass their checks), then what the old one ran is retired. Callers
    hold the app's lock.
    """

    before_prop = ctx.state.get(SCHEDULER, app, "selected")
    before = scheduler_value(ctx, app, "selected")[0]
    store(ctx, SCHEDULER, app, "selected", value)
    after = scheduler_value(ctx, app, "selected")[0]
    running = ctx.state.current_release(app) is not None and not ctx.state.get("ps", app, "stopped")
    if after == before or not running:
        return f"{app} uses the {after} scheduler" + ("" if running else " (from its next deploy)")
    progress.step(f"Moving {app} from {before} to {after}")
    try:
        pipeline.restart(ctx, app, progress)
    except BaseException:
        store(ctx, SCHEDULER, app, "selected", before_prop or "")
        raise
    if before == "swarm":
        _retire_swarm(ctx, app, progress)
    return f"{app} moved to the {after} scheduler"


def _retire_swarm(ctx: Context, app: str, progress: Progress) -> None:
    """After a move away from swarm: remove the app's services (the new scheduler routes already)."""
    grace = max(ctx.settings.stop_timeout, check_settings(ctx, app).stop_timeout)
    try:
        with eng.engine_errors(doing="removing the swarm services"):
            services = sw.app_services(ctx, app)
            sw.remove_services(services)
            sw.wait_containers_gone({s.id for s in services}, grace + 15)
    except PushdockError as e:
        logger.warning("swarm services not retired", app=app, error=str(e))
        progress.detail(f"swarm services not removed ({e}); remove them with `docker service rm`")


def select_global(ctx: Context, value: str) -> list[str]:
    """Set the default scheduler; deployed apps that follow the default stay where they run (pinned).

    Returns the pinned apps: each moves with `scheduler:set APP selected ...`.
    """
    before = scheduler_value(ctx, None, "selected")[0]
    after = value or ctx.settings.scheduler
    pinned = []
    if after != before:
        for app in ctx.state.list_apps():
            if ctx.state.get(SCHEDULER, app, "selected") is None and ctx.state.current_release(app) is not None:
                ctx.state.set(SCHEDULER, app, "selected", str(before))
                pinned.append(app)
    store(ctx, SCHEDULER, GLOBAL, "selected", value)
    return pinned
