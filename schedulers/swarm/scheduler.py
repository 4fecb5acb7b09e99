"""swarm: every process type of a release is a Docker Swarm service, swapped blue/green per release.

A deploy (research/proxies.md §5: 0 failed requests this way, where swarm's own start-first update
with fixed host ports never starts and the routing mesh needs IPVS): make the image reachable by
the nodes (swarm/images.py), create the release's services `{app}-{process}-v{N}` beside the old ones,
wait until every task is placed, running and (web) answering on its published port (swarm/ready.py),
route() to those tasks — it returns once the proxy switched and drained —, then remove the old
release's services (their tasks get SIGTERM and the grace period). Any failure before the switch
removes the new services; the old ones never stopped serving.

The app's check settings (pushdock/checks.py) mean what they mean on docker-local: `checks:disable`
scales the old services to 0 (their tasks stop; the services stay) before the new ones are created —
downtime, for apps that cannot run twice — and scales them back (and routes to them) if the new
release fails; `checks:skip` routes to new tasks as soon as they run; `wait-to-retire` keeps the old
services after the switch for that long; `stop-timeout` is each new service's stop grace period.

`ps:restart APP PROCESS` is the same swap for one process type: a new service of the current release
(`{app}-web-v7-a1b2`) beside the old one. Swarm's forced update (`--force`, start-first) is not used:
it shuts the old task down as soon as the new one runs, before the proxy knows the new task's host
port, so requests in that gap fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock.checks import CheckSettings, check_settings
from pushdock.errors import DeployFailed, PushdockError
from pushdock.scheduler import Instance, Route
from schedulers import engine as eng
from schedulers import healthchecks
from schedulers.docker_local.start import Say, report, stop_only, stop_remove
from schedulers.engine import NotReady
from schedulers.readiness import PROBE_TIMEOUT, answers
from schedulers.swarm import engine as sw
from schedulers.swarm import events as swarm_events
from schedulers.swarm import images as swarm_images
from schedulers.swarm import logs as swarm_logs
from schedulers.swarm import nodes as sn
from schedulers.swarm import run as swarm_run
from schedulers.swarm import settings as swarm_settings
from schedulers.swarm.ready import NewService, wait_ready

if TYPE_CHECKING:
    import threading

    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.routing import Upstream
    from pushdock.state import Release


class SwarmScheduler:
    """Runs releases as swarm services (`scheduler:set APP selected swarm`, or PUSHDOCK_SCHEDULER=swarm)."""

    name = "swarm"
    # Swarm replaces a failed task by itself, and a host-mode task gets a new port: `serve` follows (pipeline).
    upstreams_move = True
    # Tasks join the app-networks trigger's networks (linked services), which for a swarm app are attachable
    # overlays: a task's networks are swarm-scoped.
    joins_networks = True
    overlay_networks = True

    def watch_moves(self, wake: Callable[[], None], done: threading.Event) -> None:
        """Call wake() whenever the engine reports something that may move a task, until done (blocks)."""
        swarm_events.watch(wake, done)

    # -- deploy ---------------------------------------------------------------------------------
    def deploy(self, ctx: Context, release: Release, route: Route, progress: Progress) -> None:
        self._swap(ctx, release, route, progress, process=None)

    def restart_process(self, ctx: Context, release: Release, route: Route, progress: Progress, *,
                        process: str) -> None:
        """`ps:restart APP PROCESS`: a new service of that process type beside the old one (`shop-web-v7-a1b2`),
        checked, routed if web, then the old service retires; the app's other services are left alone."""
        self._swap(ctx, release, route, progress, process=process)

    def _swap(self, ctx: Context, release: Release, route: Route, progress: Progress, *, process: str | None) -> None:
        """New services beside the old ones (every process type, or only `process`), ready, routed, old retired."""
        say = Say(progress)
        label = f"v{release.number}"
        checks = check_settings(ctx, release.app)
        with logger.contextualize(app=release.app, release=release.number):
            plan = self._plan(ctx, release, progress, process=process)
            if ignored := sw.swarm_ignored(ctx, release.app):
                progress.step("Docker options a swarm service cannot take (ignored): " + ", ".join(ignored))
            paused = _Paused()
            created: list[NewService] = []
            try:
                if checks.disabled:
                    with eng.engine_errors(DeployFailed, label):
                        _stop_first(ctx, release, say, paused, process=process, checks=checks)
                try:
                    with eng.engine_errors(DeployFailed, f"{label} did not start"):
                        for name, count in plan.wanted:
                            service = sw.create_service(
                                ctx, release, name, replicas=count, image=plan.placement.image,
                                constraints=plan.placement.constraints
                                + swarm_settings.constraints(ctx, release.app, name), mesh=plan.mesh,
                                max_per_node=plan.max_per_node, stop_timeout=checks.stop_timeout,
                            )
                            created.append(NewService(name, service, count,
                                                      tuple(healthchecks.for_process(release, name))))
                            say.step(f"Starting {name} ({count}) of {label} as service {service.name}")
                        upstreams = wait_ready(ctx, release, created, plan.by_node, mesh=plan.mesh,
                                               on_ready=say.detail, skip=checks.skipped)
                    if process in (None, "web"):
                        say.step(f"Routing to {label}" if upstreams else "No web process: removing routes")
                        eng.switch_route(route, upstreams, label)
                except NotReady as e:
                    report(say, e)
                    raise DeployFailed(f"{label} did not start: {e.reason}") from None
            except BaseException as e:
                _remove_now(ctx, created, checks.stop_timeout)
                down = _restore(ctx, paused, route, say, release=release, plan=plan, checks=checks, process=process)
                if down and isinstance(e, PushdockError):
                    raise DeployFailed(f"{e}; {down}") from None
                raise
            # From here on the new services serve: problems are reported, never raised as a failure.
            self._retire(ctx, release.app, {n.service.id for n in created}, say, checks, process=process)
            logger.info("release deployed" if process is None else "process restarted", services=len(created))

    def _plan(self, ctx: Context, release: Release, progress: Progress, *, process: str | None = None) -> _Plan:
        """Everything checked before anything is created: swarm, formation, limits, image placement.

        `process`: only that process type is wanted (ps:restart APP PROCESS)."""
        label = f"v{release.number}"
        try:
            eng.container_port(release)
            eng.check_formation(release)
            healthchecks.validate(release)
            with eng.engine_errors(DeployFailed, label):
                sn.require_manager()
                nodes = sn.nodes(ctx)
                plan = _Plan(
                    wanted=[(p, n) for p, n in sorted(release.formation.items(), key=lambda i: eng.process_order(i[0]))
                            if n > 0 and process in (None, p)],
                    by_node={n.id: n for n in nodes},
                    mesh=swarm_settings.routing_mesh(ctx, release.app),
                    max_per_node=swarm_settings.max_per_node(ctx, release.app),
                )
                placement = swarm_images.prepare(ctx, release, nodes, progress) if plan.wanted else None
                plan.placement = placement or swarm_images.Placement(release.image)
                _check_limits(plan, nodes)
        except PushdockError as e:
            raise DeployFailed(str(e)) from e
        return plan

    def _retire(self, ctx: Context, app: str, keep: set[str], say: Say, checks: CheckSettings, *,
                process: str | None = None) -> None:
        """wait-to-retire, then remove every other service of the app (of `process`) and docker-local leftovers.

        The new services serve already: failures are reported, not raised."""
        try:
            with eng.engine_errors(doing="retiring the old release"):
                old = [s for s in sw.app_services(ctx, app, process=process) if s.id not in keep]
                leftovers = _plain(ctx, app, process)
                running = any(sw.replicas_of(s) for s in old) or any(eng.state_of(c) == "running" for c in leftovers)
                if checks.wait_to_retire > 0 and running:  # services that checks:disable stopped need no wait
                    say.detail(f"Old services retire in {checks.wait_to_retire:g}s (wait-to-retire)")
                    time.sleep(checks.wait_to_retire)
                if old:
                    say.step(f"Removing {len(old)} old service{'s' if len(old) != 1 else ''}")
                for s, error in sw.remove_services(old):
                    say.detail(f"{s.name} removed" if error is None else f"{s.name} not removed: {error}")
                for c, error in stop_remove(leftovers, checks.stop_timeout):
                    say.detail(f"container {c.name} stopped" if error is None
                               else f"container {c.name} not removed: {error}")
        except PushdockError as e:
            logger.warning("old services not retired", error=str(e))
            say.detail(f"old services not removed ({e}); the next reconcile removes them")

    # -- stop / inspect ---------------------------------------------------------------------------
    def stop(self, ctx: Context, app: str) -> None:
        """Remove the app's services and wait (bounded) until their containers here are gone."""
        timeout = check_settings(ctx, app).stop_timeout
        with eng.engine_errors(doing=f"stopping {app}"):
            if sn.swarm_state().get("LocalNodeState") != "active":
                services: list[Any] = []
            else:
                services = sw.app_services(ctx, app)
            failed = [(s, e) for s, e in sw.remove_services(services) if e]
            failed += [(c, e) for c, e in stop_remove(eng.app_containers(ctx, app), timeout) if e]
            sw.wait_containers_gone({s.id for s in services}, max(timeout, ctx.settings.stop_timeout) + 15)
        if failed:
            thing, error = failed[0]
            raise PushdockError(f"could not remove {thing.name}: {error}")

    def instances(self, ctx: Context, app: str) -> list[Instance]:
        with eng.engine_errors(doing=f"listing {app}"):
            if sn.swarm_state().get("LocalNodeState") != "active":
                return []
            return sw.instances(ctx, app)

    def ready_upstreams(self, ctx: Context, release: Release, routed: set[Upstream]) -> list[Upstream]:
        """The web tasks of `release` that serve now: those `routed` already, and new ones (a task swarm put in
        place of a failed one, on a new host port) once they answer HTTP below 500. For `serve`'s follower."""

        running = {i.upstream for i in self.instances(ctx, release.app)
                   if i.release == release.number and i.process == "web" and i.state == "running" and i.upstream}
        return sorted(u for u in running if u in routed or answers(u, PROBE_TIMEOUT))

    def logs(self, ctx: Context, app: str, *, follow: bool, tail: int | None, process: str | None) -> Iterator[str]:
        return swarm_logs.lines(ctx, app, follow=follow, tail=tail, process=process)

    # -- one-off ----------------------------------------------------------------------------------
    def run(self, ctx: Context, release: Release, argv: list[str], *, tty: bool) -> int:
        return swarm_run.run(ctx, release, argv, tty=tty)

    def run_task(self, ctx: Context, release: Release, command: str, progress: Progress, *, timeout: float,
                 label: str, commit_to: str | None = None) -> None:
        if commit_to:
            # A task whose files are kept runs on the manager, where the image is built and from where the
            # deploy then distributes the committed image like any release image.
            from schedulers.docker_local import run as docker_run  # noqa: PLC0415 -- start-up: loads only when this path runs

            docker_run.run_task(ctx, release, command, progress, timeout=timeout, label=label, commit_to=commit_to)
            return

        swarm_run.run_task(ctx, release, command, progress, timeout=timeout, label=label)

    # -- reconcile --------------------------------------------------------------------------------
    def reconcile(self, ctx: Context, release: Release, route: Route, progress: Progress) -> list[str]:
        """At `serve` start: create the release's missing services, fix replica counts, route, remove strays.

        Swarm restarts failed tasks by itself; what it cannot know is which release should run and
        where the proxy should point (host-mode ports change when a task is replaced).
        """
        say = Say(progress)
        label = f"v{release.number}"
        messages: list[str] = []
        checks = check_settings(ctx, release.app)
        with logger.contextualize(app=release.app, release=release.number), eng.engine_errors(
            doing=f"reconciling {release.app}"
        ):
            plan = self._plan(ctx, release, progress)
            everything = sw.app_services(ctx, release.app)
            keep: list[NewService] = []
            missing: list[tuple[str, int]] = []
            for process, count in plan.wanted:
                mine = [s for s in everything if sw.release_of(s) == release.number and sw.process_of(s) == process]
                if not mine:
                    missing.append((process, count))
                    continue
                service = mine[-1]  # the newest
                if (was := sw.replicas_of(service)) != count:
                    service.scale(count)
                    service.reload()
                    messages.append(f"scaled {service.name} to {count} (was {was})")
                keep.append(NewService(process, service, count))
            created: list[NewService] = []
            for process, count in missing:
                service = sw.create_service(
                    ctx, release, process, replicas=count, image=plan.placement.image,
                    constraints=plan.placement.constraints + swarm_settings.constraints(ctx, release.app, process),
                    mesh=plan.mesh, max_per_node=plan.max_per_node, stop_timeout=checks.stop_timeout,
                )
                # Like docker-local's reconcile: a recreated instance passes the app.json checks, a kept one not.
                created.append(NewService(process, service, count, tuple(healthchecks.for_process(release, process))))
                messages.append(f"created {service.name} (was missing)")
            if created or keep:
                say.step(f"Checking {release.app} {label}")
            try:
                upstreams = wait_ready(ctx, release, keep + created, plan.by_node, mesh=plan.mesh,
                                       on_ready=say.detail, history=True, skip=checks.skipped)
            except NotReady as e:
                report(say, e)
                messages.append(f"not ready: {e.reason}")
                upstreams = _running_web(ctx, release, keep + created, plan)
            route(upstreams)
            kept = {n.service.id for n in keep + created}
            for s, error in sw.remove_services([s for s in everything if s.id not in kept]):
                messages.append(f"removed stray service {s.name}" + (f" with an error: {error}" if error else ""))
            for c, error in stop_remove(eng.app_containers(ctx, release.app), checks.stop_timeout):
                messages.append(f"removed stray container {c.name}" + (f" with an error: {error}" if error else ""))
        for m in messages:
            say.detail(m)
            logger.info("reconciled", action=m)
        return messages


class _Plan:
    def __init__(self, wanted: list[tuple[str, int]], by_node: dict[str, sn.Node], mesh: bool,
                 max_per_node: int | None) -> None:
        self.wanted = wanted
        self.by_node = by_node
        self.mesh = mesh
        self.max_per_node = max_per_node
        self.placement = swarm_images.Placement("")


def _check_limits(plan: _Plan, nodes: list[sn.Node]) -> None:
    """A formation the swarm cannot place fails before anything starts, in one line."""
    eligible = [n for n in nodes if n.schedulable and f"node.id!={n.id}" not in plan.placement.constraints]
    if not eligible:
        raise PushdockError("no swarm node is ready and active to run tasks (see `swarm:report`)")
    if plan.max_per_node is None:
        return
    room = plan.max_per_node * len(eligible)
    for process, count in plan.wanted:
        if count > room:
            raise PushdockError(
                f"{process}={count} cannot be placed: at most {plan.max_per_node} per node on {len(eligible)} "
                f"eligible node{'s' if len(eligible) != 1 else ''} ({room} in all); scale down, add nodes, "
                f"or raise `scheduler:set APP max-per-node N`"
            )


def _running_web(ctx: Context, release: Release, services: list[NewService], plan: _Plan) -> list[Upstream]:
    """Reconcile's fallback when a check failed: route to whatever web task runs."""
    upstreams = []
    web = [n.service for n in services if n.process == "web"]
    for t in sw.tasks_of(web):
        if sw.is_current(t) and sw.task_state(t) == "running":
            u = sw.task_upstream(t, plan.by_node)
            if u is not None:
                upstreams.append(u)
    return sorted(upstreams)


def _remove_now(ctx: Context, created: list[NewService], stop_timeout: int) -> None:
    """Remove the services of a failed start and wait (bounded) for their containers; errors are logged."""
    if not created:
        return
    sw.remove_services([n.service for n in created])
    try:
        sw.wait_containers_gone({n.service.id for n in created}, stop_timeout + 5)
    except Exception as e:  # the original failure is what the user must see
        logger.warning("could not wait for removed services", error=str(e))


# -- checks:disable ---------------------------------------------------------------------------------------
STOP_SLACK = 15.0  # seconds beyond the grace period for swarm to report stopped tasks
STOPPED = sw.FAILED_STATES | {"remove"}


@dataclass
class _Paused:
    """What checks:disable stopped before the new release started, to start again if it fails."""

    services: list[tuple[Any, int]] = field(default_factory=list)  # (service, its replicas before)
    containers: list[Any] = field(default_factory=list)  # docker-local leftovers (a scheduler move)

    def __bool__(self) -> bool:
        return bool(self.services or self.containers)

    def describe(self) -> str:
        parts = [f"{n} old {what}{'s' if n != 1 else ''}" for n, what in
                 ((len(self.services), "service"), (len(self.containers), "container")) if n]
        return " and ".join(parts)


def _plain(ctx: Context, app: str, process: str | None) -> list[Any]:
    return [c for c in eng.app_containers(ctx, app) if process in (None, (c.labels or {}).get(eng.LABEL_PROCESS))]


def _stop_first(ctx: Context, release: Release, say: Say, paused: _Paused, *, process: str | None,
                checks: CheckSettings) -> None:
    """checks:disable: scale the old services to 0 (and stop docker-local leftovers) and wait until their tasks
    stopped, before anything new is created. The services stay, to be scaled back: `paused` records them."""
    services = [s for s in sw.app_services(ctx, release.app, process=process) if sw.replicas_of(s) > 0]
    containers = [c for c in _plain(ctx, release.app, process) if eng.state_of(c) == "running"]
    if not services and not containers:
        return
    what = _Paused([(s, 0) for s in services], containers).describe()
    say.step(f"Stopping {what} first (checks disabled: the app is down until v{release.number} runs)")
    for s in services:
        replicas = sw.replicas_of(s)
        try:
            with eng.engine_errors():
                s.reload()
                s.scale(0)
        except PushdockError as e:
            say.detail(f"{s.name} not stopped: {e}")
            continue
        paused.services.append((s, replicas))
    for c, error in stop_only(containers, checks.stop_timeout):
        if error is None:
            paused.containers.append(c)
        else:
            say.detail(f"{c.name} not stopped: {error}")
    timeout = checks.stop_timeout + STOP_SLACK
    if not _tasks_stopped([s for s, _ in paused.services], timeout):
        say.detail(f"old tasks still stopping after {timeout:g}s; starting v{release.number} anyway")


def _tasks_stopped(services: list[Any], timeout: float) -> bool:
    """Wait until no task of these services runs (on any node: the manager's task records)."""
    deadline = time.monotonic() + timeout
    while any(sw.task_state(t) not in STOPPED for t in sw.tasks_of(services)):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _restore(ctx: Context, paused: _Paused, route: Route, say: Say, *, release: Release, plan: _Plan,
             checks: CheckSettings, process: str | None) -> str:
    """The new release failed after checks:disable stopped the old one: scale the old services back, wait until
    their new tasks are ready and route to them. '' when the old release serves again, else why the app is down."""
    if not paused:
        return ""
    say.step(f"Starting the {paused.describe()} again (checks disabled: the app is down until they run)")
    try:
        with eng.engine_errors(doing="starting the old release again"):
            back = []
            for s, replicas in paused.services:
                s.reload()
                s.scale(replicas)
                back.append(NewService(sw.process_of(s), s, replicas))
            for c in paused.containers:
                c.start()
            upstreams = wait_ready(ctx, release, back, plan.by_node, mesh=plan.mesh, on_ready=say.detail,
                                   history=True, skip=checks.skipped)
            for c in paused.containers:
                c.reload()
                if (u := eng.upstream_of(c)) is not None:
                    upstreams.append(u)
            if process in (None, "web") and upstreams:
                say.step("Routing to the old release")
                eng.switch_route(route, sorted(upstreams), "the old release")
    except NotReady as e:
        report(say, e)
        return _down(say, e.reason)
    except PushdockError as e:
        return _down(say, str(e))
    return ""


def _down(say: Say, why: str) -> str:
    logger.warning("old release not restored", error=why)
    say.detail(f"the old release did not start again: {why}")
    return f"the app is down: the old release did not start again ({why})"
