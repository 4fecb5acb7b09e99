"""docker-local: every process instance is a container on this host's Docker engine.

A deploy is blue/green per release, the procedure measured in research/proxies.md §4 (0 HTTP errors
in 266,810 requests across the safe swaps): start the new containers beside the old ones, check them
(HTTP for web: a TCP check is useless behind docker-proxy, which accepts before the app listens),
route() — which returns once the proxy switched and its old workers drained —, and only then SIGTERM
the old containers with a grace period and remove them. Containers run with `--init` so PID 1
forwards SIGTERM (busybox httpd as PID 1 ignores it: 10 s stops).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock.errors import DeployFailed, PushdockError
from pushdock.routing import Upstream
from schedulers import docker_engine as eng
from schedulers import docker_logs
from schedulers.base import Instance, Route
from schedulers.docker_engine import Slot
from schedulers.readiness import Aborted, NotReady, Started, wait_ready

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import Release

START_ATTEMPTS = 5  # host-port races with other programs
RESTART_POLICY = {"Name": "unless-stopped"}  # survives engine restarts, not `docker stop`


class _Say:
    """Progress from several threads, one line at a time."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.lock = threading.Lock()

    def step(self, text: str) -> None:
        with self.lock:
            self.progress.step(text)

    def detail(self, *lines: str) -> None:
        with self.lock:
            for line in lines:
                self.progress.detail(line)


class DockerLocalScheduler:
    """Runs releases as containers on the local engine (`PUSHDOCK_SCHEDULER=docker-local`)."""

    name = "docker-local"

    # -- deploy ---------------------------------------------------------------------------------
    def deploy(self, ctx: Context, release: Release, route: Route, progress: Progress) -> None:
        say = _Say(progress)
        label = f"v{release.number}"
        with logger.contextualize(app=release.app, release=release.number):
            try:
                eng.container_port(release)  # a bad PORT fails before anything starts
                eng.check_formation(release)
                with eng.engine_errors(DeployFailed, label):
                    eng.client()
            except PushdockError as e:
                raise DeployFailed(str(e)) from e
            created: list[Any] = []
            try:
                with eng.engine_errors(DeployFailed, f"{label} did not start"):
                    started, failures = self._start_all(
                        ctx, release, eng.slots(release.formation), created, say, all_or_nothing=True
                    )
                if failures:
                    _report(say, failures[0])
                    raise DeployFailed(f"{label} did not start: {failures[0].reason}")
                upstreams = [s.upstream for s in started if s.upstream is not None]
                say.step(f"Routing to {label}" if upstreams else "No web process: removing routes")
                _route(route, upstreams, label)
            except BaseException:
                _remove_now(created)
                raise
            # From here on the new release serves: problems are reported, never raised as a failure.
            new_ids = {c.id for c in created}
            try:
                with eng.engine_errors(doing="listing old containers"):
                    old = [c for c in eng.app_containers(ctx, release.app) if c.id not in new_ids]
            except PushdockError as e:
                logger.warning("old containers not retired", error=str(e))
                say.detail(f"old containers not stopped ({e}); the next reconcile removes them")
                return
            self._retire(ctx, old, say)
            logger.info("release deployed", instances=len(started), retired=len(old))

    def _start_all(
        self,
        ctx: Context,
        release: Release,
        wanted: list[Slot],
        created: list[Any],
        say: _Say,
        *,
        all_or_nothing: bool,
    ) -> tuple[list[Started], list[NotReady]]:
        """Start and check `wanted` concurrently (web=3 takes one check's time, not three).

        Every container made is appended to `created`, ready or not. With `all_or_nothing` the first
        failure stops the other checks. Engine errors are raised; readiness failures are returned.
        """
        if not wanted:
            return [], []
        for process in dict.fromkeys(s.process for s in wanted):
            count = sum(1 for s in wanted if s.process == process)
            say.step(f"Starting {process} ({count}) of v{release.number}")
        abort = threading.Event()
        lock = threading.Lock()

        def one(slot: Slot) -> Started:
            try:
                s = _launch(ctx, release, slot, created, lock)
                wait_ready(ctx, s, abort)
                # Only a ready instance gets restarted by the engine: a crash while starting stays a
                # crash (with its exit status), not a restart loop that hides it.
                s.container.update(restart_policy=RESTART_POLICY)
            except BaseException:
                if all_or_nothing:
                    abort.set()
                raise
            say.detail(f"{slot} ready" + (f" on {s.upstream}" if s.upstream else ""))
            return s

        workers = min(64, len(wanted))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pushdock-start") as pool:
            futures = [pool.submit(one, slot) for slot in wanted]
            try:
                errors = [f.exception() for f in futures]
            except BaseException:  # interrupted: let the checks end now, not at their timeout
                abort.set()
                raise
        failures = [e for e in errors if isinstance(e, NotReady)]
        other = [e for e in errors if e is not None and not isinstance(e, (NotReady, Aborted))]
        if other:
            raise other[0]
        return [f.result() for f, e in zip(futures, errors, strict=True) if e is None], failures

    # -- retire / stop ----------------------------------------------------------------------------
    def _retire(self, ctx: Context, old: list[Any], say: _Say) -> None:
        """SIGTERM, grace period, remove. The deploy already succeeded: failures are reported, not raised."""
        if not old:
            return
        say.step(f"Stopping {len(old)} old container{'s' if len(old) != 1 else ''}")
        for c, error in _stop_remove(old, ctx.settings.stop_timeout):
            what = f"{eng.slot_of(c) or c.name} of v{eng.release_of(c)}"
            if error is None:
                say.detail(f"{what} stopped")
            else:
                logger.warning("old container not removed", container=c.name, error=error)
                say.detail(f"{what} not removed: {error}")

    def stop(self, ctx: Context, app: str) -> None:
        with eng.engine_errors(doing=f"stopping {app}"):
            containers = eng.app_containers(ctx, app)
            failed = [(c, e) for c, e in _stop_remove(containers, ctx.settings.stop_timeout) if e]
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

    # -- reconcile --------------------------------------------------------------------------------
    def reconcile(self, ctx: Context, release: Release, route: Route, progress: Progress) -> list[str]:
        """At `serve` start: revive or recreate what `release` lacks, route, remove strays.

        Best effort per instance: an instance that fails its check is reported, the others are
        routed. Engine errors and route() errors are raised.
        """
        say = _Say(progress)
        label = f"v{release.number}"
        messages: list[str] = []
        eng.check_formation(release)
        with logger.contextualize(app=release.app, release=release.number), eng.engine_errors(
            doing=f"reconciling {release.app}"
        ):
            everything = eng.app_containers(ctx, release.app)
            ours = [c for c in everything if eng.release_of(c) == release.number]
            strays = [c for c in everything if eng.release_of(c) != release.number]
            keep, revive, missing, extras = _plan(ours, eng.slots(release.formation))
            if revive or missing:
                say.step(f"Restoring {release.app} {label}")
            for slot, c in revive:
                was = eng.state_of(c)
                if _revive(ctx, slot, c, say, messages):
                    keep[slot] = c
                    messages.append(f"started {slot} of {label} (was {was})")
                else:
                    missing.append(slot)
            created: list[Any] = []
            started, failures = self._start_all(
                ctx, release, sorted(missing), created, say, all_or_nothing=False
            )
            for s in started:
                keep[s.slot] = s.container
                messages.append(f"created {s.slot} of {label} (was missing)")
            for f in failures:
                _report(say, f)
                messages.append(f"could not start {label}: {f.reason}")
            _remove_now([c for c in created if c.id not in {k.id for k in keep.values()}])
            upstreams = []
            for slot, c in sorted(keep.items()):
                c.reload()  # ports may differ after an engine restart
                u = eng.upstream_of(c)
                if slot.process == "web" and eng.state_of(c) == "running" and u is not None:
                    upstreams.append(u)
            route(upstreams)
            for c, error in _stop_remove(extras + strays, ctx.settings.stop_timeout):
                what = f"{eng.slot_of(c) or '?'} of v{eng.release_of(c)} ({c.name})"
                messages.append(f"removed stray {what}" + (f" with an error: {error}" if error else ""))
        for m in messages:
            say.detail(m)
            logger.info("reconciled", action=m)
        return messages


def _route(route: Route, upstreams: list[Upstream], label: str) -> None:
    try:
        route(upstreams)
    except PushdockError as e:
        raise DeployFailed(f"{label}: proxy switch failed: {e}") from e
    except Exception as e:
        logger.exception("route failed")
        raise DeployFailed(f"{label}: proxy switch failed ({type(e).__name__})") from e


def _report(say: _Say, failure: NotReady) -> None:
    say.detail(f"{failure.reason}; last log lines:" if failure.lines else failure.reason)
    say.detail(*(f"  {line}" for line in failure.lines))


# -- starting one instance ---------------------------------------------------------------------------
def _launch(ctx: Context, release: Release, slot: Slot, created: list[Any], lock: threading.Lock) -> Started:
    """Create and start one container; web ones publish PORT on 127.0.0.1:<free port>.

    The host port is explicit (not left to docker) so it survives an engine restart unchanged.
    """
    import docker

    web = slot.process == "web"
    port = eng.container_port(release)
    for attempt in range(1, START_ATTEMPTS + 1):
        host_port = eng.free_port() if web else None
        api = eng.client().api
        # The low-level call: the high-level create() has no stop_timeout.
        made = api.create_container(
            release.image,
            command=eng.container_command(release, slot.process),
            name=eng.container_name(release.app, slot, release.number),
            environment=eng.container_env(release, slot),
            labels=eng.container_labels(ctx, release, slot),
            ports=[port] if web else None,
            stop_signal="SIGTERM",
            stop_timeout=ctx.settings.stop_timeout,
            use_config_proxy=False,  # the app's environment is its config, nothing else
            host_config=api.create_host_config(
                init=True,
                restart_policy={"Name": "no"},  # until ready: see _start_all
                port_bindings={port: ("127.0.0.1", host_port)} if web else None,
            ),
        )
        c = eng.client().containers.prepare_model(made)
        with lock:
            created.append(c)  # registered before anything else can fail: the caller removes it
        try:
            c.reload()
            c.start()
        except docker.errors.APIError as e:
            if web and eng.port_taken(e) and attempt < START_ATTEMPTS:
                logger.debug("host port taken, retrying", port=host_port)
                _remove_now([c])
                with lock:
                    created.remove(c)
                continue
            raise
        logger.info("container started", container=c.name, port=host_port)
        return Started(slot, c, Upstream("127.0.0.1", host_port) if host_port else None)
    raise AssertionError("unreachable")


def _revive(ctx: Context, slot: Slot, c: Any, say: _Say, messages: list[str]) -> bool:
    """`docker start` a stopped instance; False (and removed) if it cannot start, e.g. its port is taken."""
    import docker

    try:
        c.start()
    except docker.errors.APIError as e:
        why = "its host port is taken" if eng.port_taken(e) else eng.one_line(e)
        messages.append(f"recreating {slot}: {c.name} did not start ({why})")
        _remove_now([c])
        return False
    c.reload()
    try:
        wait_ready(ctx, Started(slot, c, eng.upstream_of(c)), threading.Event())
    except NotReady as e:
        _report(say, e)
        messages.append(f"{slot} not ready: {e.reason}")
    return True


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


def _stop_remove(containers: list[Any], timeout: int) -> list[tuple[Any, str | None]]:
    """Stop (SIGTERM, `timeout` s grace) and remove concurrently; (container, error or None) each."""
    if not containers:
        return []

    def one(c: Any) -> tuple[Any, str | None]:
        import docker
        import requests

        try:
            c.stop(timeout=timeout)
            c.remove(v=True, force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            return c, eng.one_line(e)
        logger.info("container removed", container=c.name)
        return c, None

    return _each(one, containers)


def _remove_now(containers: list[Any]) -> None:
    """Force-remove containers of a failed start; errors are logged (the original failure matters)."""

    def one(c: Any) -> tuple[Any, str | None]:
        import docker
        import requests

        try:
            c.remove(v=True, force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            logger.warning("container not removed", container=c.name, error=eng.one_line(e))
            return c, eng.one_line(e)
        return c, None

    _each(one, list(containers))


def _each(fn: Callable[[Any], tuple[Any, str | None]], items: list[Any]) -> list[tuple[Any, str | None]]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items)), thread_name_prefix="pushdock-stop") as pool:
        return list(pool.map(fn, items))
