"""`pushdock serve`: the proxy, then the HTTP and SSH doors until SIGTERM/SIGINT.

The reconcile pass runs beside the doors (gitserver/reconcile.py): an app whose lock a deploy worker still
holds is reconciled once that deploy ends, and keeps no other app waiting. Meanwhile a thread follows
instances that move by themselves (swarm replacing a failed task gets a new host port) and re-routes their
apps (hooks.pipeline.follow_upstreams), and the timer (pushdock/timer.py, the one clock: app cron jobs now,
backups and certificate renewals later) runs what is scheduled.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock import zygote as zygote_mod
from pushdock.errors import PushdockError
from pushdock.settings import as_env

FOLLOW_INTERVAL = 5.0  # seconds between looks at instances that can move when no engine event wakes the follower
FOLLOW_HOT = 0.2  # seconds between looks for FOLLOW_HOT_FOR seconds after an event (a new task must answer first)
FOLLOW_HOT_FOR = 30.0
PLUGIN_JOBS = "plugin:"  # timer names of the timer-jobs trigger's jobs
TRIM_INTERVAL = 30.0  # seconds between hand-backs of free heap pages
M_ARENA_MAX = -8  # glibc's mallopt parameter
CRON_SYNC_INTERVAL = 5.0  # seconds between looks at the apps' cron jobs (a deploy or `cron:set` elsewhere)

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.timer import Timer


def serve(ctx: Context, on_ready: Callable[[str], None]) -> None:
    """Run in the foreground; `on_ready` gets one line once every door listens. The proxy keeps running after."""
    from gitserver.reconcile import Reconciler  # noqa: PLC0415 -- start-up: loads only when this path runs
    from pushdock import log  # noqa: PLC0415 -- start-up: loads only when this path runs

    _few_malloc_arenas()
    log.configure(ctx.settings.log_level, logfile=ctx.state.path("logs", "pushdock.log"), stderr=True)
    _report_plugins(ctx)
    proxy = ctx.proxy()
    proxy.ensure_running(ctx)
    reconciler = Reconciler(ctx)
    http = ctx.bus.first("http_door", ctx=ctx, health=lambda: {"reconciling": reconciler.pending()})
    if http is None:
        raise PushdockError("no plugin provides the HTTP door (the web plugin is missing)")
    zygote = _zygote(ctx, getattr(http, "worker_modules", ()))
    done = threading.Event()
    follower = threading.Thread(target=_follow, args=(ctx, done), name="pushdock-follow", daemon=True)
    reconciler.start()
    follower.start()
    timer = _timer(ctx)
    try:
        asyncio.run(_serve(ctx, http, proxy.name, on_ready))
    finally:
        done.set()
        timer.stop()
        http.stop()
        follower.join(10)
        reconciler.stop()
        if zygote is not None:
            zygote_mod.install(None)
            zygote.stop()
    logger.info("pushdock stopped")


def _zygote(ctx: Context, http_modules: tuple[str, ...]) -> zygote_mod.Zygote | None:
    """The fork server of the doors' workers (pushdock/zygote.py), started before any thread of serve: it imports
    the SSH worker's and the HTTP door's worker modules once; the doors fork warm workers from it."""
    if not ctx.settings.warm_workers:
        return None
    from gitserver import worker  # noqa: PLC0415 -- start-up: loads only when this path runs

    zygote = zygote_mod.Zygote.start((worker.__name__, *http_modules), {**os.environ, **as_env(ctx.settings)})
    zygote_mod.install(zygote)
    logger.info("warm workers", zygote_pid=zygote.process.pid)
    return zygote


def _few_malloc_arenas() -> None:
    """glibc gives each thread that allocates its own malloc arena, whose freed pages stay resident: serve's
    dozen threads allocate little, so two arenas serve them all (what `MALLOC_ARENA_MAX=2` does, set before
    any thread starts). Elsewhere (musl, macOS) nothing to do."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 2)


def _trim_memory() -> None:
    """Hand the heap's free pages back to the system (glibc keeps them resident after a burst: a reconcile of
    every app, a proxy rebuild). Cheap: a walk of malloc's free lists."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _report_plugins(ctx: Context) -> None:
    """A plugin that does not load is logged and left out (plugin:list shows why); serve starts regardless."""
    from pushdock.plugins import scan  # noqa: PLC0415 -- start-up: loads only when this path runs

    for p in scan(ctx.state.path("plugins"), ctx.bus.load_errors):
        if p.error is not None:
            logger.error("plugin failed to load", plugin=p.name, error=p.error)
        elif p.enabled:
            logger.info("plugin loaded", plugin=p.name, kind=p.kind, triggers=" ".join(p.triggers))


def _timer(ctx: Context) -> Timer:
    """The timer with serve's periodic jobs, started: the apps' cron jobs, kept in step with their releases,
    and the plugins' jobs (the `timer-jobs` trigger: letsencrypt's daily renewal, scheduled backups)."""
    from pushdock import cron  # noqa: PLC0415 -- start-up: loads only when this path runs
    from pushdock.context import Context  # noqa: PLC0415 -- start-up: loads only when this path runs
    from pushdock.state import Identity  # noqa: PLC0415 -- start-up: loads only when this path runs
    from pushdock.timer import Timer  # noqa: PLC0415 -- start-up: loads only when this path runs

    # Runs it starts are recorded as the timer's (door `cron`), not as whoever started serve.
    scheduled = Context(settings=ctx.settings, identity=Identity(name="pushdock", role="admin", door="cron"),
                        bus_override=ctx.bus)
    timer = Timer()
    cron.sync(scheduled, timer)
    timer.add("pushdock:cron-sync", lambda: cron.sync(scheduled, timer), every=CRON_SYNC_INTERVAL)
    _sync_plugin_jobs(scheduled, timer)
    timer.add("pushdock:jobs-sync", lambda: _sync_plugin_jobs(scheduled, timer), every=CRON_SYNC_INTERVAL)
    timer.add("pushdock:trim-memory", _trim_memory, every=TRIM_INTERVAL)
    timer.start()
    return timer


def _sync_plugin_jobs(ctx: Context, timer: Timer) -> None:
    """The timer-jobs trigger's jobs (scheduled backups) on the timer, as `plugin:NAME`; the others removed."""
    want: dict[str, tuple[str, Callable[[], object]]] = {}
    for part in ctx.bus.call("timer_jobs", ctx=ctx):
        want.update(part or {})
    for name in timer.names(PLUGIN_JOBS):
        if name[len(PLUGIN_JOBS):] not in want:
            timer.remove(name)
    for name, (cron, fn) in want.items():
        try:
            timer.add(PLUGIN_JOBS + name, fn, cron=cron)
        except PushdockError as e:
            logger.warning("timer job not scheduled", job=name, reason=e.message)


def _follow(ctx: Context, done: threading.Event) -> None:
    """Re-route apps whose instances moved: woken by the schedulers' engine events (`watch_moves`), then looking
    often while the moved instances come up, and every FOLLOW_INTERVAL s in any case."""
    from hooks import pipeline  # noqa: PLC0415 -- start-up: loads only when this path runs

    wake = threading.Event()
    hot_until = [0.0]

    def woken() -> None:
        hot_until[0] = time.monotonic() + FOLLOW_HOT_FOR
        wake.set()

    for name, scheduler in ctx.bus.registry("schedulers").items():
        watch = getattr(scheduler, "watch_moves", None)
        if watch is not None:
            threading.Thread(target=watch, args=(woken, done), name=f"pushdock-events-{name}", daemon=True).start()
    while not done.is_set():
        wake.wait(FOLLOW_HOT if time.monotonic() < hot_until[0] else FOLLOW_INTERVAL)
        wake.clear()
        if done.is_set():
            return
        try:
            for app in pipeline.follow_upstreams(ctx):
                logger.info("re-routed: its instances moved", app=app)
        except Exception as e:  # the engine away, a proxy error: try again next time, never die
            logger.warning("following instances failed", error=str(e))


async def _serve(ctx: Context, http: Any, proxy_name: str, on_ready: Callable[[str], None]) -> None:
    from gitserver.ssh import SSHDoor  # noqa: PLC0415 -- start-up: loads only when this path runs

    ssh = SSHDoor(ctx)
    ssh_host, ssh_port = await ssh.start()
    http_host, http_port = http.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    on_ready(f"pushdock serving: ssh on {ssh_host}:{ssh_port}, http on {http_host}:{http_port}, "
             f"proxy {proxy_name} on :{ctx.settings.proxy_port}")
    logger.info("serving", ssh_port=ssh_port, http_port=http_port, proxy=proxy_name)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        logger.info("stopping: workers in flight finish on their own", workers=len(ssh.workers))
        await ssh.close()
