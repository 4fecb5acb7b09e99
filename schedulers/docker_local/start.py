"""docker-local's instance work: start and check containers concurrently, revive, stop and remove them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock import docker_options, logship, networks, resources, storage
from pushdock.checks import CheckSettings, check_settings
from pushdock.routing import Upstream
from schedulers import docker_networks, healthchecks
from schedulers import engine as eng
from schedulers.engine import Aborted, NotReady, Slot, Started
from schedulers.readiness import wait_ready

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import Release

START_ATTEMPTS = 5  # host-port races with other programs


class Say:
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


def report(say: Say, failure: NotReady) -> None:
    say.detail(f"{failure.reason}; last log lines:" if failure.lines else failure.reason)
    say.detail(*(f"  {line}" for line in failure.lines))


def start_all(
    ctx: Context,
    release: Release,
    wanted: list[Slot],
    created: list[Any],
    say: Say,
    *,
    all_or_nothing: bool,
    checks: CheckSettings,
) -> tuple[list[Started], list[NotReady]]:
    """Start and check `wanted` concurrently (web=3 takes one check's time, not three).

    Every container made is appended to `created`, ready or not. With `all_or_nothing` the first
    failure stops the other checks. Engine errors are raised; readiness failures are returned.
    The ready ones still run without a restart policy: the caller gives them theirs (keep_restarting).
    """
    if not wanted:
        return [], []
    for process in dict.fromkeys(s.process for s in wanted):
        count = sum(1 for s in wanted if s.process == process)
        say.step(f"Starting {process} ({count}) of v{release.number}")
    abort = threading.Event()
    lock = threading.Lock()
    started_at = time.monotonic()
    launched: list[float] = []

    def one(slot: Slot) -> Started:
        try:
            s = launch(ctx, release, slot, created, lock, stop_timeout=checks.stop_timeout)
            launched.append(time.monotonic() - started_at)
            notes = wait_ready(ctx, s, abort, healthchecks.for_process(release, slot.process), skip=checks.skipped,
                               uptime=checks.uptime)
            docker_networks.connect(ctx, release.app, s.container.id, ("attach-post-deploy",),
                                    networks.aliases(release.app, slot.process, slot.index))
        except BaseException:
            if all_or_nothing:
                abort.set()
            raise
        say.detail(f"{slot} ready" + (f" on {s.upstream}" if s.upstream else "")
                   + (f" ({'; '.join(notes)})" if notes else ""))
        return s

    workers = min(64, len(wanted))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pushdock-start") as pool:
        futures = [pool.submit(one, slot) for slot in wanted]
        try:
            errors = [f.exception() for f in futures]
        except BaseException:  # interrupted: let the checks end now, not at their timeout
            abort.set()
            raise
    start = max(launched, default=0.0)  # the slowest container's create + start; then until all answered
    say.progress.add_stage("start", start)
    say.progress.add_stage("ready", time.monotonic() - started_at - start)
    failures = [e for e in errors if isinstance(e, NotReady)]
    other = [e for e in errors if e is not None and not isinstance(e, (NotReady, Aborted))]
    if other:
        raise other[0]
    return [f.result() for f, e in zip(futures, errors, strict=True) if e is None], failures


def keep_restarting(ctx: Context, app: str, started: list[Started]) -> list[tuple[Any, str | None]]:
    """Give ready instances the app's restart policy, concurrently; (container, error or None) each.

    Only a ready instance gets restarted by the engine: a crash while starting stays a crash (with its exit
    status), not a restart loop that hides it. A deploy calls this once the proxy routes to them (an engine call
    of 10-40 ms each that nobody waits for there)."""
    policy = eng.restart_policy(ctx, app)

    def one(c: Any) -> tuple[Any, str | None]:
        import docker  # noqa: PLC0415 -- start-up: docker loads when first used
        import requests  # noqa: PLC0415 -- start-up: requests loads when first used

        try:
            c.update(restart_policy=policy)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            return c, eng.one_line(e)
        return c, None

    return each(one, [s.container for s in started])


def launch(
    ctx: Context, release: Release, slot: Slot, created: list[Any], lock: threading.Lock, *, stop_timeout: int
) -> Started:
    """Create and start one container; web ones publish PORT on 127.0.0.1:<free port>.

    It runs with the process type's resource limits (`resource:limit`) as they are now, the release's mounts, the
    app's `deploy` docker-options, its log shipping (`logs:set vector-sink`: the engine's syslog or GELF driver),
    the private networks of the services linked to it, and its networks (pushdock/networks.py: the initial one at
    creation, the attach-post-create ones before it starts; start_all joins the attach-post-deploy ones once ready).

    The host port is explicit (not left to docker) so it survives an engine restart unchanged.
    Containers run with `--init` so PID 1 forwards SIGTERM (busybox httpd as PID 1 ignores it).
    """
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    web = slot.process == "web"
    port = eng.container_port(release)
    limits = resources.host_config(resources.for_process(ctx.state, release.app, slot.process))
    command = eng.container_command(release, slot.process, eng.image_entrypoint(release.image))
    mounts = storage.binds(ctx.state, release)
    shipping = logship.log_config(ctx.state, release.app, slot.process)  # logs:set vector-sink
    service_networks = eng.networks(ctx, release.app)  # of the services linked to the app
    options = docker_options.for_phase(ctx.state, release.app, "deploy")
    aliases = networks.aliases(release.app, slot.process, slot.index)
    network = docker_networks.create_options(ctx, release.app, aliases)
    for attempt in range(1, START_ATTEMPTS + 1):
        host_port = eng.free_port() if web else None
        api = eng.client().api
        # The low-level call: the high-level create() has no stop_timeout.
        made = api.create_container(
            release.image,
            command=command,
            name=eng.container_name(release.app, slot, release.number),
            environment=eng.container_env(release, slot),
            labels=options.labels | eng.container_labels(ctx, release, slot),
            ports=[port] if web else None,
            stop_signal="SIGTERM",
            stop_timeout=stop_timeout,
            use_config_proxy=False,  # the app's environment is its config, nothing else
            host_config=api.create_host_config(**docker_options.host_config(options, {
                "init": True,
                "restart_policy": {"Name": "no"},  # until ready: see start_all
                "port_bindings": {port: ("127.0.0.1", host_port)} if web else None,
                "log_config": docker.types.LogConfig(**shipping) if shipping else None,
                **limits,
                **mounts,
                **network.get("host", {}),
            })),
            **{k: v for k, v in network.items() if k != "host"},
        )
        c = eng.client().containers.prepare_model(made)
        with lock:
            created.append(c)  # registered before anything else can fail: the caller removes it
        try:
            eng.join_networks(api, c.id, service_networks)
            docker_networks.connect(ctx, release.app, c.id, ("attach-post-create",), aliases)
            c.reload()
            c.start()
        except docker.errors.APIError as e:
            if web and eng.port_taken(e) and attempt < START_ATTEMPTS:
                logger.debug("host port taken, retrying", port=host_port)
                remove_now([c])
                with lock:
                    created.remove(c)
                continue
            raise
        logger.info("container started", container=c.name, port=host_port)
        return Started(slot, c, Upstream("127.0.0.1", host_port) if host_port else None)
    raise AssertionError("unreachable")


def revive(ctx: Context, slot: Slot, c: Any, say: Say, messages: list[str]) -> bool:
    """`docker start` a stopped instance; False (and removed) if it cannot start, e.g. its port is taken."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        c.start()
    except docker.errors.APIError as e:
        why = "its host port is taken" if eng.port_taken(e) else eng.one_line(e)
        messages.append(f"recreating {slot}: {c.name} did not start ({why})")
        remove_now([c])
        return False
    c.reload()
    try:
        settings = check_settings(ctx, c.labels["pushdock.app"])
        wait_ready(ctx, Started(slot, c, eng.upstream_of(c)), threading.Event(), skip=settings.skipped,
                   uptime=settings.uptime)
    except NotReady as e:
        report(say, e)
        messages.append(f"{slot} not ready: {e.reason}")
    return True


def stop_only(containers: list[Any], timeout: int) -> list[tuple[Any, str | None]]:
    """Stop (SIGTERM, `timeout` s grace) without removing, so they can be started again."""
    def one(c: Any) -> tuple[Any, str | None]:
        import docker  # noqa: PLC0415 -- start-up: docker loads when first used
        import requests  # noqa: PLC0415 -- start-up: requests loads when first used

        try:
            c.stop(timeout=timeout)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            return c, eng.one_line(e)
        return c, None

    return each(one, containers)


def stop_remove(containers: list[Any], timeout: int) -> list[tuple[Any, str | None]]:
    """Stop (SIGTERM, `timeout` s grace) and remove concurrently; (container, error or None) each."""
    def one(c: Any) -> tuple[Any, str | None]:
        import docker  # noqa: PLC0415 -- start-up: docker loads when first used
        import requests  # noqa: PLC0415 -- start-up: requests loads when first used

        try:
            c.stop(timeout=timeout)
            c.remove(v=True, force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            return c, eng.one_line(e)
        logger.info("container removed", container=c.name)
        return c, None

    return each(one, containers)


def remove_now(containers: list[Any]) -> None:
    """Force-remove containers of a failed start; errors are logged (the original failure matters)."""

    def one(c: Any) -> tuple[Any, str | None]:
        import docker  # noqa: PLC0415 -- start-up: docker loads when first used
        import requests  # noqa: PLC0415 -- start-up: requests loads when first used

        try:
            c.remove(v=True, force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            logger.warning("container not removed", container=c.name, error=eng.one_line(e))
            return c, eng.one_line(e)
        return c, None

    each(one, list(containers))


def each(fn: Callable[[Any], tuple[Any, str | None]], items: list[Any]) -> list[tuple[Any, str | None]]:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items)), thread_name_prefix="pushdock-stop") as pool:
        return list(pool.map(fn, items))
