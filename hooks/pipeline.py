"""The deploy chain, in one readable function per entry point.

receive (export the pushed tree, read app.json) -> builder-detect -> build -> release (the record, then the
release phase: predeploy, Procfile `release:`) -> scheduler-deploy (the zero-downtime swap) -> postdeploy ->
post-deploy -> prune old images. Every stage fires its triggers through the bus. Callers hold the app's lock.
Config and scale changes, restarts and rollbacks enter at the release stage (hooks/releases.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from hooks import releases
from hooks.appjson import AppJson, read_app_json
from hooks.detect import detect_builder
from hooks.source import export_tree
from pushdock import builds, storage
from pushdock.builder import BuildRequest
from pushdock.errors import DeployFailed, PushdockError, UsageError
from pushdock.procfile import read_procfile
from pushdock.progress import NULL, Progress
from pushdock.state import Release, State

if TYPE_CHECKING:
    from pushdock.context import Context

DEFAULT_PORT = 5000


def deploy_push(ctx: Context, app: str, sha: str, progress: Progress, *, branch: str) -> Release:
    """Build commit `sha` of `app` and deploy it as a new release with zero downtime."""
    state, bus = ctx.state, ctx.bus
    started = time.time()
    build_dir = state.make_build_dir(app, "src")
    with logger.contextualize(app=app, sha=sha[:12]), builds.track(ctx, app, sha, progress) as build:
        try:
            progress.step(f"Deploying {app} ({sha[:7]}, branch {branch}): build {build.build.id}")
            building = time.monotonic()
            export_tree(state.repo_path(app), sha, build_dir, progress=progress)
            bus.call("post_extract", ctx=ctx, app=app, build_dir=str(build_dir), sha=sha)
            app_json = read_app_json(build_dir)  # a malformed app.json fails before the build
            procfile = read_procfile(build_dir)  # so does a malformed Procfile; parsed once, for the builder too

            env = state.get_env(app)
            forced = bus.first("builder_detect", ctx=ctx, app=app, build_dir=str(build_dir))
            forced = forced or state.get("builder", app, "selected")
            name, reason = detect_builder(build_dir, env, forced, bus.registry("builders"),
                                          dockerfile=state.get("builder-dockerfile", app, "dockerfile-path"))
            progress.step(f"Building with the {name} builder ({reason})")
            build.set_builder(name)
            builder = bus.lookup("builders", name)

            number = state.next_release_number(app)
            image = releases.image_name(app, number)
            bus.call("pre_build", ctx=ctx, app=app, builder=name, build_dir=str(build_dir))
            result = builder.build(ctx, BuildRequest(app, build_dir, image, env, procfile), progress)
            bus.call("post_build", ctx=ctx, app=app, builder=name, image=result.image)
            progress.add_stage("build", time.monotonic() - building)

            build.releasing()
            processes = {**result.processes, **procfile}
            if not processes:
                raise DeployFailed("nothing to run: add a Procfile or give the image a CMD")
            release = Release(
                app=app, number=number, image=result.image, env=env, processes=processes,
                formation=_formation(_wanted_formation(ctx, app, app_json, processes), processes),
                sha=sha, who=ctx.identity.name, why=f"deploy {sha[:7]}",
                web_port=_web_port(env, result.web_port), scripts=app_json.scripts, checks=app_json.checks,
                mounts=_mounts(state, app),
                formation_fixed=app_json.formation_fixed, exposed=list(result.exposed),
                cron=app_json.cron,
            )
            current = _deploy_release(ctx, release, progress, previous=state.current_release(app))
            ctx.event("deploy", app=app, started=started, release=current.name, sha=sha)
            build.save(release=current.name)
            return current
        except PushdockError as e:
            ctx.event("deploy", app=app, started=started, result="failed", sha=sha, reason=str(e))
            raise
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)


def new_release(
    ctx: Context,
    app: str,
    *,
    why: str,
    env: dict[str, str] | None = None,
    formation: dict[str, int] | None = None,
    mounts: list[str] | None = None,
    progress: Progress = NULL,
) -> Release | None:
    """A config, scale or storage change: the current image with new env/formation/mounts as release vN+1.

    The new env/formation/mounts are stored only once the release serves (a failed deploy changes nothing).
    Returns None when the app was never deployed (the change is then stored for its first deploy).
    """
    state = ctx.state
    current = state.current_release(app)
    if current is None:
        if env is not None:
            state.set_env(app, env)
        if formation is not None:
            state.set_formation(app, formation)
        if mounts is not None:
            storage.store(state, app, mounts)
        return None
    env = state.get_env(app) if env is None else env
    wanted = state.get_formation(app) if formation is None else formation
    release = current.with_(
        number=state.next_release_number(app), env=env, who=ctx.identity.name, why=why,
        mounts=_mounts(state, app) if mounts is None else list(mounts),
        formation=_formation(wanted, current.processes), web_port=_web_port(env, current.web_port),
        created=time.time(), status="pending",
    )
    return _deploy_change(ctx, release, progress, previous=current)


def rollback(ctx: Context, app: str, number: int | None, progress: Progress = NULL) -> Release:
    """Deploy the image, env and formation of vN (default: the previous successful release) as a new release."""
    state = ctx.state
    target = releases.rollback_target(state, app, number)
    current = state.current_release(app)
    release = target.with_(
        number=state.next_release_number(app), who=ctx.identity.name, why=f"rollback to {target.name}",
        created=time.time(), status="pending", pruned=False, mounts=_mounts(state, app),  # data stays mounted
    )
    progress.step(f"Rolling back {app} to {target.name} as {release.name}")
    started = time.time()
    try:
        deployed = _deploy_change(ctx, release, progress, previous=current)
    except PushdockError as e:
        ctx.event("rollback", app=app, started=started, result="failed", target=target.name, reason=str(e))
        raise
    ctx.event("rollback", app=app, started=started, release=deployed.name, target=target.name)
    return deployed


def restart(ctx: Context, app: str, progress: Progress = NULL, *, process: str | None = None) -> Release | None:
    """Fresh containers of the current release (or of one process type), swapped in with zero downtime."""
    current = ctx.state.current_release(app)
    if current is None:
        return None
    if process is not None:
        if ctx.state.get("ps", app, "stopped"):
            raise UsageError(f"{app} is stopped: `ps:start {app}` starts every process")
        if current.formation.get(process, 0) < 1:
            running = " ".join(f"{k}={v}" for k, v in current.formation.items()) or "nothing"
            raise UsageError(f"{app} runs no {process} process (formation: {running})")
        scheduler = ctx.scheduler(app)
        restart_process = getattr(scheduler, "restart_process", None)
        if restart_process is None:
            raise PushdockError(f"the {scheduler.name} scheduler cannot restart one process type: "
                                f"`ps:restart {app}` restarts them all")
        restart_process(ctx, current, _route(ctx, app), progress, process=process)
        return current
    ctx.state.delete("ps", app, "stopped")
    _run_scheduler(ctx, current, progress)
    return current


def restart_running(ctx: Context, app: str, progress: Progress = NULL, *, process: str | None = None) -> bool:
    """Restart the app (or one process type) with zero downtime if it runs (new resource limits); whether it did."""
    current = ctx.state.current_release(app)
    if current is None or ctx.state.get("ps", app, "stopped"):
        return False
    if process is not None and current.formation.get(process, 0) < 1:
        return False  # not running: it starts with the new limits whenever it is scaled up
    restart(ctx, app, progress, process=process)
    return True


def stop(ctx: Context, app: str) -> None:
    """Stop every process of the app; its domains answer 503 until `ps:start`."""
    ctx.state.set("ps", app, "stopped", "1")
    ctx.proxy().apply(ctx, app, ctx.domains(app), [])
    ctx.scheduler(app).stop(ctx, app)


def reroute(ctx: Context, app: str) -> None:
    """Re-apply the app's routing (domains, ports, certs changed) to the web instances of its current release."""
    current = ctx.state.current_release(app)
    running = [] if current is None or ctx.state.get("ps", app, "stopped") else [
        i.upstream for i in ctx.scheduler(app).instances(ctx, app)
        if i.release == current.number and i.process == "web" and i.state == "running" and i.upstream
    ]
    _route(ctx, app)(sorted(running))


def reroute_all(ctx: Context) -> list[str]:
    """Re-apply every app's routing (after switching proxy type); returns per-app failures."""
    failures = []
    for app in ctx.state.list_apps():
        try:
            reroute(ctx, app)
        except PushdockError as e:
            failures.append(f"{app}: {e}")
    return failures


def follow_upstreams(ctx: Context) -> list[str]:
    """Re-route apps whose running web instances are not those the proxy routes to; the apps re-routed.

    Only schedulers whose instances change address by themselves (`upstreams_move`: swarm replacing a failed
    host-mode task) need this; docker-local instances keep their host port across restarts. The scheduler's
    `ready_upstreams` says which serve now (a new task only once it answers). An app busy with a deploy is
    skipped (the deploy routes it). `serve` calls this every few seconds.
    """
    followed = []
    routes = ctx.proxy().routes(ctx)
    for app in ctx.state.list_apps():
        scheduler = ctx.scheduler(app)
        if not getattr(scheduler, "upstreams_move", False) or app not in routes:
            continue
        current = ctx.state.current_release(app)
        if current is None or ctx.state.get("ps", app, "stopped"):
            continue
        try:
            with ctx.state.app_lock(app, timeout=0):
                routed = set(routes[app].upstreams)
                follower: Any = scheduler  # upstreams_move and ready_upstreams: a capability, not the Protocol's
                ready = follower.ready_upstreams(ctx, current, routed)
                if ready and set(ready) != routed:
                    _route(ctx, app)(ready)
                    followed.append(app)
        except PushdockError as e:  # busy (a deploy will route it) or the engine is away: next time
            logger.debug("upstreams not followed", app=app, reason=str(e))
    return followed


def clean_dead_builds(ctx: Context) -> list[str]:
    """Remove the build directories of builds killed with their process (a running build's is kept)."""
    left = ctx.state.clean_build_dirs()
    return [f"removed {len(left)} build directories left by dead processes: {', '.join(left)}"] if left else []


def reconcile_all(ctx: Context, progress: Progress = NULL) -> list[str]:
    """Make what runs match each app's current release (waiting for each app's lock); report what was fixed."""
    messages = clean_dead_builds(ctx)
    for app in ctx.state.list_apps():
        try:
            messages += reconcile_app(ctx, app, progress, timeout=ctx.settings.lock_timeout)
        except PushdockError as e:
            messages.append(f"{app}: reconcile failed: {e}")
    return messages


def reconcile_app(ctx: Context, app: str, progress: Progress = NULL, *, timeout: float,
                  on_wait: Callable[[], None] | None = None, on_locked: Callable[[], None] | None = None) -> list[str]:
    """Under the app's lock (Conflict if another holds it past `timeout`; `on_wait` is called if it is held,
    `on_locked` once it is taken): releases left pending marked failed, then what runs made to match the
    current release."""
    messages: list[str] = []
    with ctx.state.app_lock(app, timeout=timeout, on_wait=on_wait):
        if on_locked is not None:
            on_locked()
        messages += [f"{app}: {m}" for m in _fail_interrupted(ctx, app)]
        current = ctx.state.current_release(app)
        if current is None or ctx.state.get("ps", app, "stopped"):
            return messages
        messages += [f"{app}: {m}" for m in ctx.scheduler(app).reconcile(ctx, current, _route(ctx, app), progress)]
    return messages


def _fail_interrupted(ctx: Context, app: str) -> list[str]:
    """Releases left `pending` by a deploy that died with its process: under the lock, none is in progress."""
    out = []
    for r in ctx.state.list_releases(app):
        if r.status == "pending":
            ctx.state.save_release(r.with_(status="failed", why=f"{r.why} (interrupted)"))
            out.append(f"{r.name} was interrupted mid-deploy: marked failed")
    return out


# -- the shared tail of every deploy -----------------------------------------------------------------
def _deploy_release(ctx: Context, release: Release, progress: Progress, *, previous: Release | None) -> Release:
    """pre-release -> release phase -> scheduler swap -> promote -> postdeploy -> post-deploy (-> prune, later)."""
    state, bus = ctx.state, ctx.bus
    releasing = time.monotonic()
    for message in _fail_interrupted(ctx, release.app):  # a deploy holds the app's lock: none is in progress
        progress.detail(message)
        logger.info("reconciled", app=release.app, action=message)
    state.save_release(release)
    phases = releases.needs_release_phase(release, previous)
    try:
        bus.call("pre_release", ctx=ctx, app=release.app, release=release.number, image=release.image)
        if phases:
            release = releases.run_before(ctx, release, progress)
        progress.add_stage("release", time.monotonic() - releasing)
        _run_scheduler(ctx, release, progress)
    except PushdockError:
        state.save_release(release.with_(status="failed"))
        raise
    except BaseException:  # interrupted (Ctrl-C): not pending forever
        state.save_release(release.with_(status="failed", why=f"{release.why} (interrupted)"))
        raise
    releasing = time.monotonic()
    current = state.promote_release(release)
    state.set_env(release.app, release.env)
    state.set_formation(release.app, release.formation)
    storage.store(state, release.app, release.mounts)
    state.delete("ps", release.app, "stopped")
    if ctx.settings.expose_ports and release.exposed != (previous.exposed if previous else []):
        _follow_exposed(ctx, release, progress)
    failure = releases.run_after(ctx, release, progress) if phases else None
    if failure:
        ctx.event("postdeploy", app=release.app, result="failed", release=release.name, reason=failure)
    bus.call("post_deploy", ctx=ctx, app=release.app, release=release.number, image=release.image)
    releases.prune_later(ctx, release.app, progress)  # a push: after its answer, once old containers retired
    progress.add_stage("release", time.monotonic() - releasing)
    port = "" if ctx.settings.proxy_port == 80 else f":{ctx.settings.proxy_port}"
    progress.step(f"Released {release.name}: http://{ctx.domains(release.app)[0]}{port}")
    if failure:
        # A push fails as Dokku's does, so CI notices; the release is live and not undone (see releases.md).
        raise releases.PostdeployFailed(current, failure)
    return current


def _deploy_change(ctx: Context, release: Release, progress: Progress, *, previous: Release | None) -> Release:
    """_deploy_release for a config or scale change or a rollback: a failed postdeploy is a warning there.

    The change is applied and serves; its command goes on to record it (refs/meta/config, events).
    """
    try:
        return _deploy_release(ctx, release, progress, previous=previous)
    except releases.PostdeployFailed as e:
        progress.detail(f"warning: {e}")
        return e.release


def _follow_exposed(ctx: Context, release: Release, progress: Progress) -> None:
    """Re-route once the release is current: its EXPOSEd ports are default listeners (proxies/ports.py), which
    the swap could not know yet. The release serves already, so a refusal is a warning, not a failed deploy."""
    try:
        reroute(ctx, release.app)
    except PushdockError as e:
        logger.warning("exposed ports not routed", app=release.app, reason=e.message)
        progress.detail(f"warning: the EXPOSEd ports are not served: {e.message} (see ports:report {release.app})")


def _run_scheduler(ctx: Context, release: Release, progress: Progress) -> None:
    ctx.bus.call("pre_deploy", ctx=ctx, app=release.app, release=release.number, image=release.image)
    ctx.scheduler(release.app).deploy(ctx, release, _route(ctx, release.app), progress)


def _route(ctx: Context, app: str):  # type: ignore[no-untyped-def]
    proxy = ctx.proxy()
    return lambda upstreams: proxy.apply(ctx, app, ctx.domains(app), upstreams)


def _mounts(state: State, app: str) -> list[str]:
    return storage.specs(storage.stored(state, app))


def _wanted_formation(ctx: Context, app: str, app_json: AppJson, processes: dict[str, str]) -> dict[str, int] | None:
    """app.json's `formation` when it gives quantities (authoritative: unnamed types get 0, as in Dokku);
    else the stored formation, or on an app's first deploy (nothing stored yet) app.json's `formation`."""
    from_app_json = app_json.formation
    stored = ctx.state.get_formation(app)
    if not app_json.formation_fixed and (
            stored is not None or ctx.state.current_release(app) is not None or not from_app_json):
        return stored
    unknown = sorted(set(from_app_json) - set(processes))
    if unknown:
        raise DeployFailed(f"app.json formation names process type {unknown[0]!r}, which the app does not "
                           f"define (it has: {', '.join(sorted(processes))})")
    if app_json.formation_fixed:
        return {name: from_app_json.get(name, 0) for name in processes}
    return from_app_json


def scale_refusal(ctx: Context, app: str) -> str | None:
    """Why `ps:scale` (or a `[scale]` change in refs/meta/config) is refused now, or None."""
    current = ctx.state.current_release(app)
    if current is None or not current.formation_fixed:
        return None
    return (f"{app}'s formation comes from the formation key of its app.json "
            f"({' '.join(f'{k}={v}' for k, v in current.formation.items())}): change app.json and push, "
            "or remove the key to scale with ps:scale")


def _formation(stored: dict[str, int] | None, processes: dict[str, str]) -> dict[str, int]:
    """Keep stored counts of known types; new types start at 1 for web (and release-less apps), else 0."""
    stored = stored or {}
    formation = {}
    for name in processes:
        if name == "release":
            continue
        formation[name] = stored.get(name, 1 if name == "web" else 0)
    return formation


def _web_port(env: dict[str, str], exposed: int | None) -> int:
    raw = env.get("PORT")
    if raw and raw.isdigit():
        return int(raw)
    return exposed or DEFAULT_PORT
