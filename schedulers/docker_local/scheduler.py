"""docker-local: every process instance is a container on this host's Docker engine.

A deploy is blue/green per release, the procedure measured in research/proxies.md §4 (0 HTTP errors
in 266,810 requests across the safe swaps): start the new containers beside the old ones, check them
(HTTP for web: a TCP check is useless behind docker-proxy, which accepts before the app listens; then
the release's app.json healthchecks), route() — which returns once the proxy switched and its old
workers drained —, wait `wait-to-retire`, and only then SIGTERM the old containers with a grace period
(`stop-timeout`) and remove them. `checks:disable` stops the old containers first (downtime; they are
started again if the new ones fail); `checks:skip` routes as soon as the new containers run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock.checks import CheckSettings, check_settings
from pushdock.errors import DeployFailed, PushdockError
from pushdock.scheduler import Instance, Route
from schedulers import engine as eng
from schedulers import healthchecks
from schedulers.docker_local import logs as docker_logs
from schedulers.docker_local import run as docker_run
from schedulers.docker_local.start import (
    Say,
    keep_restarting,
    remove_now,
    report,
    revive,
    start_all,
    stop_only,
    stop_remove,
)
from schedulers.engine import Slot

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import Release


class DockerLocalScheduler:
    """Runs releases as containers on the local engine (`PUSHDOCK_SCHEDULER=docker-local`)."""

    name = "docker-local"
    joins_networks = True  # new containers join the app-networks trigger's networks (linked services)

    # -- deploy ---------------------------------------------------------------------------------
    def deploy(self, ctx: Context, release: Release, route: Route, progress: Progress) -> None:
        self._swap(ctx, release, route, progress, process=None)

    def restart_process(self, ctx: Context, release: Release, route: Route, progress: Progress, *,
                        process: str) -> None:
        """Replace the instances of one process type of `release` with fresh ones, swapped like a deploy."""
        self._swap(ctx, release, route, progress, process=process)

    def _swap(self, ctx: Context, release: Release, route: Route, progress: Progress, *, process: str | None) -> None:
        say = Say(progress)
        label = f"v{release.number}"
        checks = check_settings(ctx, release.app)
        wanted = [s for s in eng.slots(release.formation) if process is None or s.process == process]
        with logger.contextualize(app=release.app, release=release.number):
            try:
                eng.container_port(release)  # a bad PORT fails before anything starts
                eng.check_formation(release)
                healthchecks.validate(release)
                with eng.engine_errors(DeployFailed, label):
                    eng.client()
                    paused = _stop_first(ctx, release, process, checks, say) if checks.disabled else []
            except PushdockError as e:
                raise DeployFailed(str(e)) from e
            created: list[Any] = []
            try:
                with eng.engine_errors(DeployFailed, f"{label} did not start"):
                    started, failures = start_all(ctx, release, wanted, created, say, all_or_nothing=True,
                                                  checks=checks)
                if failures:
                    report(say, failures[0])
                    raise DeployFailed(f"{label} did not start: {failures[0].reason}")
                upstreams = [s.upstream for s in started if s.upstream is not None]
                if process in (None, "web"):
                    say.step(f"Routing to {label}" if upstreams else "No web process: removing routes")
                    with progress.stage("switch"):
                        eng.switch_route(route, upstreams, label)
            except BaseException:
                remove_now(created)
                _restore(paused, say)
                raise
            # From here on the new instances serve: problems are reported, never raised as a failure.
            _keep_restarting(ctx, release, started, say)
            new_ids = {c.id for c in created}
            try:
                with eng.engine_errors(doing="listing old containers"):
                    old = [i for i in eng.app_container_ids(ctx, release.app, process=process) if i not in new_ids]
            except PushdockError as e:
                logger.warning("old containers not retired", error=str(e))
                say.detail(f"old containers not stopped ({e}); the next reconcile removes them")
                return
            logger.info("release deployed", instances=len(started), retiring=len(old))
            if old:
                progress.later(lambda p: _retire_later(old, p, checks, release))

    def stop(self, ctx: Context, app: str) -> None:
        with eng.engine_errors(doing=f"stopping {app}"):
            containers = eng.app_containers(ctx, app)
            timeout = check_settings(ctx, app).stop_timeout
            failed = [(c, e) for c, e in stop_remove(containers, timeout) if e]
        if failed:
            c, error = failed[0]
            raise PushdockError(f"could not remove container {c.name}: {error}")

    # -- inspection -------------------------------------------------------------------------------
    def instances(self, ctx: Context, app: str) -> list[Instance]:
        with eng.engine_errors(doing=f"listing {app}"):
            found = [i for i in map(eng.instance_of, eng.app_containers(ctx, app)) if i is not None]
        return sorted(found, key=lambda i: (i.release, eng.process_order(i.process), i.index, i.name))

    def logs(
        self, ctx: Context, app: str, *, follow: bool, tail: int | None, process: str | None
    ) -> Iterator[str]:
        """Lines `web.1: text`; oldest first across containers, or live until the consumer closes."""
        return docker_logs.lines(ctx, app, follow=follow, tail=tail, process=process)

    def inspect(self, ctx: Context, app: str) -> list[dict[str, Any]]:
        """`docker inspect` of the app's containers (values of the environment are the caller's to mask)."""
        with eng.engine_errors(doing=f"inspecting {app}"):
            return [dict(c.attrs) for c in eng.app_containers(ctx, app)]

    def enter(self, ctx: Context, app: str, argv: list[str], *, process: str | None, container_id: str | None,
              tty: bool) -> int:
        """Run argv in one of the app's running containers (docker_run.pick_instance); its exit status."""

        target = docker_run.pick_instance(self.instances(ctx, app), app, process=process, container_id=container_id)
        return docker_run.exec_in(target.id, argv, tty=tty, app=app)

    # -- one-off containers ------------------------------------------------------------------------
    def run(self, ctx: Context, release: Release, argv: list[str], *, tty: bool) -> int:
        return docker_run.run(ctx, release, argv, tty=tty)

    def run_task(self, ctx: Context, release: Release, command: str, progress: Progress, *, timeout: float,
                 label: str, commit_to: str | None = None) -> None:

        docker_run.run_task(ctx, release, command, progress, timeout=timeout, label=label, commit_to=commit_to)

    # -- reconcile --------------------------------------------------------------------------------
    def reconcile(self, ctx: Context, release: Release, route: Route, progress: Progress) -> list[str]:
        """At `serve` start: revive or recreate what `release` lacks, route, remove strays.

        Best effort per instance: an instance that fails its check is reported, the others are
        routed. Engine errors and route() errors are raised.
        """
        say = Say(progress)
        label = f"v{release.number}"
        messages: list[str] = []
        checks = check_settings(ctx, release.app)
        eng.check_formation(release)
        with logger.contextualize(app=release.app, release=release.number), eng.engine_errors(
            doing=f"reconciling {release.app}"
        ):
            everything = eng.app_containers(ctx, release.app)
            ours = [c for c in everything if eng.release_of(c) == release.number]
            strays = [c for c in everything if eng.release_of(c) != release.number]
            keep, stopped, missing, extras = _plan(ours, eng.slots(release.formation))
            if stopped or missing:
                say.step(f"Restoring {release.app} {label}")
            for slot, c in stopped:
                was = eng.state_of(c)
                if revive(ctx, slot, c, say, messages):
                    keep[slot] = c
                    messages.append(f"started {slot} of {label} (was {was})")
                else:
                    missing.append(slot)
            created: list[Any] = []
            started, failures = start_all(
                ctx, release, sorted(missing), created, say, all_or_nothing=False, checks=checks
            )
            for s in started:
                keep[s.slot] = s.container
                messages.append(f"created {s.slot} of {label} (was missing)")
            _keep_restarting(ctx, release, started, say)
            for f in failures:
                report(say, f)
                messages.append(f"could not start {label}: {f.reason}")
            remove_now([c for c in created if c.id not in {k.id for k in keep.values()}])
            upstreams = []
            for slot, c in sorted(keep.items()):
                c.reload()  # ports may differ after an engine restart
                u = eng.upstream_of(c)
                if slot.process == "web" and eng.state_of(c) == "running" and u is not None:
                    upstreams.append(u)
            route(upstreams)
            for c, error in stop_remove(extras + strays, checks.stop_timeout):
                what = f"{eng.slot_of(c) or '?'} of v{eng.release_of(c)} ({c.name})"
                messages.append(f"removed stray {what}" + (f" with an error: {error}" if error else ""))
            # Release-phase containers run under the app's lock, which reconcile holds: any left is an orphan.
            tasks = [c for c in eng.one_off_containers(ctx, release.app) if c.labels.get(eng.LABEL_ONE_OFF) != "run"]
            for c, error in stop_remove(tasks, 0):
                messages.append(f"removed interrupted {c.labels.get(eng.LABEL_ONE_OFF)} task {c.name}"
                                + (f" with an error: {error}" if error else ""))
        for m in messages:
            say.detail(m)
            logger.info("reconciled", action=m)
        return messages


def _keep_restarting(ctx: Context, release: Release, started: list[Any], say: Say) -> None:
    """keep_restarting, its failures reported: the instances serve, only the engine will not restart them."""
    for c, error in keep_restarting(ctx, release.app, started):
        if error is not None:
            logger.warning("restart policy not set", container=c.name, error=error)
            say.detail(f"{eng.slot_of(c) or c.name} will not be restarted by the engine if it stops: {error}")


def _stop_first(ctx: Context, release: Release, process: str | None, checks: CheckSettings, say: Say) -> list[Any]:
    """checks:disable: stop (not remove) what runs before the new release starts; returns what was stopped."""
    running = eng.app_containers(ctx, release.app, process=process, running=True)
    if not running:
        return []
    say.step(f"Stopping {len(running)} old container{'s' if len(running) != 1 else ''} first "
             f"(checks disabled: the app is down until v{release.number} runs)")
    stopped = []
    for c, error in stop_only(running, checks.stop_timeout):
        if error is None:
            stopped.append(c)
        else:
            say.detail(f"{c.name} not stopped: {error}")
    return stopped


def _restore(paused: list[Any], say: Say) -> None:
    """The new release failed after checks:disable stopped the old one: start the old containers again."""
    if not paused:
        return
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    say.step(f"Starting the {len(paused)} old container{'s' if len(paused) != 1 else ''} again")
    for c in paused:
        try:
            c.start()
            say.detail(f"{eng.slot_of(c) or c.name} of v{eng.release_of(c)} started")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            logger.warning("old container not restarted", container=c.name, error=eng.one_line(e))
            say.detail(f"{c.name} did not start: {eng.one_line(e)}")


def _retire_later(ids: list[str], progress: Progress, checks: CheckSettings, release: Release) -> None:
    """`_retire` as a job of the deploy's Progress: possibly after the push answered, in another process (the
    containers are looked up again, with this process's engine client). Never raises."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    with progress.stage("retire"), logger.contextualize(app=release.app, release=release.number):
        old = []
        try:
            for i in ids:
                with contextlib.suppress(docker.errors.NotFound):
                    old.append(eng.client().containers.get(i))
        except (docker.errors.DockerException, PushdockError) as e:
            logger.warning("old containers not retired", error=eng.one_line(e))
            return
        _retire(old, Say(progress), checks)


def _retire(old: list[Any], say: Say, checks: CheckSettings) -> None:
    """wait-to-retire, then SIGTERM, grace period, remove. The deploy already succeeded: failures are reported."""
    if not old:
        return
    if checks.wait_to_retire > 0:
        say.detail(f"Old containers retire in {checks.wait_to_retire:g}s (wait-to-retire)")
        time.sleep(checks.wait_to_retire)
    say.step(f"Stopping {len(old)} old container{'s' if len(old) != 1 else ''}")
    for c, error in stop_remove(old, checks.stop_timeout):
        what = f"{eng.slot_of(c) or c.name} of v{eng.release_of(c)}"
        if error is None:
            say.detail(f"{what} stopped")
        else:
            logger.warning("old container not removed", container=c.name, error=error)
            say.detail(f"{what} not removed: {error}")


# -- plans and removal -----------------------------------------------------------------------------
def _plan(
    ours: list[Any], wanted: list[Slot]
) -> tuple[dict[Slot, Any], list[tuple[Slot, Any]], list[Slot], list[Any]]:
    """Split the release's containers into keep (running), revive (stopped), missing slots, extras."""
    by_slot: dict[Slot | None, list[Any]] = {}
    for c in ours:
        by_slot.setdefault(eng.slot_of(c), []).append(c)
    keep: dict[Slot, Any] = {}
    revive: list[tuple[Slot, Any]] = []
    missing: list[Slot] = []
    extras: list[Any] = []
    for slot in wanted:
        found = by_slot.pop(slot, [])
        # A running one wins over stopped ones; then the newest.
        found.sort(key=lambda c: (eng.exit_reason(c) is None, c.attrs.get("Created", "")), reverse=True)
        if not found:
            missing.append(slot)
        elif eng.state_of(found[0]) == "running":
            keep[slot] = found[0]
        else:
            revive.append((slot, found[0]))
        extras += found[1:]
    for rest in by_slot.values():
        extras += rest
    return keep, revive, missing, extras


