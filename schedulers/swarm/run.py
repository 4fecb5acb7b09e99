"""One-off processes on swarm: `run` (interactive) and run_task (release phase, pre/postdeploy).

run_task is a swarm service of its own: replicas 1, restart condition none, the app's placement,
labelled `pushdock.one-off`. It runs where the app's tasks may run (the image's placement rules are
the same), its output streams back through the service logs, and its exit status comes from the
task. The service is removed afterwards, whatever happened.

`run` is docker-local's one-off container on the manager's engine, attached to this process's stdio:
swarm has no way to attach to a task's stdin or TTY, and the manager always has the image (it is built
there).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from typing import TYPE_CHECKING

from loguru import logger

from pushdock import resources, storage
from pushdock.checks import check_settings
from pushdock.errors import DeployFailed, PushdockError, TaskFailed
from schedulers import engine as eng
from schedulers import log_follow
from schedulers.docker_local import run as docker_run
from schedulers.docker_local.run import task_command
from schedulers.swarm import engine as sw
from schedulers.swarm import images as swarm_images
from schedulers.swarm import logs as swarm_logs
from schedulers.swarm import nodes as sn

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import Release

TERMINAL = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})
POLL = 0.2


def _label_name(label: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", label.lower()).strip("-")[:20] or "task"


def run_task(ctx: Context, release: Release, command: str, progress: Progress, *, timeout: float,
             label: str) -> None:
    """Run `command` once as a one-shot service; DeployFailed on a non-zero exit, a rejection or a timeout."""
    from docker.types import ContainerSpec, Placement, RestartPolicy, ServiceMode, TaskTemplate  # noqa: PLC0415 -- start-up: docker loads when first used

    what = _label_name(label)
    try:
        with eng.engine_errors(DeployFailed, f"{label} task"):
            sn.require_manager()
            nodes = sn.nodes(ctx)
            placement = swarm_images.prepare(ctx, release, nodes, progress)
            labels = {**sw.service_labels(ctx, release, what), sw.LABEL_ONE_OFF: what}
            spec = ContainerSpec(
                placement.image, command=task_command(release.image, command), env=sw.service_env(release, what),
                labels=labels, init=True, stop_signal="SIGTERM",
                stop_grace_period=check_settings(ctx, release.app).stop_timeout * 1_000_000_000,
                mounts=storage.swarm_mounts(ctx.state, release),
            )
            joined = sw.task_networks(ctx, release.app)  # a release or cron task reaches linked services too
            template = TaskTemplate(spec, restart_policy=RestartPolicy("none"),
                                    networks=[{"Target": n} for n in joined] or None,
                                    resources=resources.swarm_resources(resources.for_process(ctx.state, release.app,
                                                                                              what)),
                                    placement=Placement(constraints=placement.constraints or None))
            api = eng.client().api
            made = api.create_service(
                template, name=sw.service_name(release.app, what, release.number, sw.new_suffix()),
                labels=labels, mode=ServiceMode("replicated", replicas=1),
            )
    except PushdockError as e:
        raise DeployFailed(str(e)) from e
    service_id = made["ID"]
    progress.step(f"Running the {label} command")
    try:
        with eng.engine_errors(DeployFailed, f"{label} task"):
            code, why = _follow_until_done(service_id, progress, timeout, {n.id: n for n in nodes})
    finally:
        _remove_service(service_id)
    if why is not None or code is None:  # _follow_until_done gives one of the two
        raise DeployFailed(f"{label} command {why or 'ended without an exit status'}")
    if code != 0:
        raise TaskFailed(f"{label} command failed with exit status {code}", status=code)


def _remove_service(service_id: str) -> None:
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    for attempt in (1, 2):  # a pooled connection may have died with the closed log stream: retry once
        try:
            eng.client().api.remove_service(service_id)
            return
        except docker.errors.NotFound:
            return
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            logger.warning("one-off service not removed", service=service_id, attempt=attempt, error=eng.one_line(e))


def _follow_until_done(
    service_id: str, progress: Progress, timeout: float, by_node: dict[str, sn.Node]
) -> tuple[int | None, str | None]:
    """Stream the task's output until it ends: (exit code, None) or (None, why it did not run)."""
    started = time.time()
    deadline = time.monotonic() + timeout
    last_key = ""
    lock = threading.Lock()
    response, lines = swarm_logs.open_follow(service_id, started - 1)

    def pump() -> None:
        nonlocal last_key
        with contextlib.suppress(Exception):  # ends when the response is closed
            for line in lines:
                key, _, text = swarm_logs.parse(line)
                with lock:
                    if key > last_key:
                        last_key = key
                        progress.detail(text)

    reader = threading.Thread(target=pump, name="pushdock-task-logs", daemon=True)
    reader.start()
    try:
        while True:
            tasks = eng.client().api.tasks(filters={"service": service_id})
            ended = [t for t in tasks if sw.task_state(t) in TERMINAL]
            if ended:
                task = ended[0]
                break
            if time.monotonic() >= deadline:
                return None, f"did not finish within {timeout:g}s"
            time.sleep(POLL)
        time.sleep(0.3)  # let the last lines arrive on the stream
    finally:
        log_follow.close_stream(response)
        reader.join(2)
    # Anything the follow stream had not delivered yet, from the history.
    with contextlib.suppress(Exception):
        raw = eng.client().api.service_logs(service_id, details=True, stdout=True, stderr=True, timestamps=True,
                                            tail="all", is_tty=False)
        for line in log_follow.raw_lines(raw):
            key, _, text = swarm_logs.parse(line)
            with lock:
                if key > last_key:
                    last_key = key
                    progress.detail(text)
    status = task.get("Status") or {}
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if sw.task_state(task) in ("complete", "failed") and code is not None:
        return int(code), None
    return None, sw.failure_of(task, by_node) or f"ended as {sw.task_state(task)}"


# -- run: an attached container on the manager ------------------------------------------------------
def run(ctx: Context, release: Release, argv: list[str], *, tty: bool) -> int:
    """`pushdock run APP CMD...`: docker-local's one-off container (stdio, TTY, limits), on the manager's engine."""
    return docker_run.run(ctx, release, argv, tty=tty)
