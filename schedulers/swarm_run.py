"""One-off processes on swarm: `run` (interactive) and run_task (release phase, pre/postdeploy).

run_task is a swarm service of its own: replicas 1, restart condition none, the app's placement,
labelled `pushdock.one-off`. It runs where the app's tasks may run (the image's placement rules are
the same), its output streams back through the service logs, and its exit status comes from the
task. The service is removed afterwards, whatever happened.

`run` is a plain container on the manager's engine, attached to this process's stdio: swarm has no
way to attach to a task's stdin or TTY, and the manager always has the image (it is built there).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from hooks.checks import check_settings
from pushdock import resources
from pushdock.errors import DeployFailed, PushdockError
from schedulers import docker_engine as eng
from schedulers import log_follow, swarm_images, swarm_logs
from schedulers import swarm_engine as sw
from schedulers import swarm_nodes as sn

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
    from docker.types import ContainerSpec, Placement, RestartPolicy, ServiceMode, TaskTemplate

    what = _label_name(label)
    try:
        with eng.engine_errors(DeployFailed, f"{label} task"):
            sn.require_manager()
            nodes = sn.nodes(ctx)
            placement = swarm_images.prepare(ctx, release, nodes, progress)
            labels = {**sw.service_labels(ctx, release, what), sw.LABEL_ONE_OFF: what}
            spec = ContainerSpec(
                placement.image, command=["/bin/sh", "-c", command], env=sw.service_env(release, what),
                labels=labels, init=True, stop_signal="SIGTERM",
                stop_grace_period=check_settings(ctx, release.app).stop_timeout * 1_000_000_000,
            )
            template = TaskTemplate(spec, restart_policy=RestartPolicy("none"),
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
    if why is not None:
        raise DeployFailed(f"{label} command {why}")
    if code != 0:
        raise DeployFailed(f"{label} command failed with exit status {code}")


def _remove_service(service_id: str) -> None:
    import docker
    import requests

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
    """`pushdock run APP CMD...`: a one-off container of the release, attached to stdin/stdout/stderr."""
    import docker

    client = eng.client()
    api = client.api
    labels = {**sw.service_labels(ctx, release, "run"), sw.LABEL_ONE_OFF: "run"}
    env = eng.container_env(release, eng.Slot("run", 1))
    command = ["/bin/sh", "-c", " ".join(argv)] if len(argv) == 1 and " " in argv[0] else (argv or None)
    with eng.engine_errors(doing=f"running a one-off container of {release.app}"):
        try:
            client.images.get(release.image)
        except docker.errors.ImageNotFound:
            raise PushdockError(f"image {release.image} is not on this node's Docker engine") from None
        made = api.create_container(
            release.image, command=command, environment=env, labels=labels, stdin_open=True, tty=tty,
            name=f"{release.app}.run.{sw.new_suffix()}{sw.new_suffix()}", use_config_proxy=False,
            host_config=api.create_host_config(
                init=True, **resources.host_config(resources.for_process(ctx.state, release.app, "run"))),
        )
        cid = made["Id"]
        try:
            sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            api.start(cid)
            _pump(sock, tty)
            return int(api.wait(cid).get("StatusCode", 1))
        finally:
            with contextlib.suppress(Exception):
                api.remove_container(cid, force=True)


def _raw_socket(sock: Any) -> socket.socket:
    return getattr(sock, "_sock", sock)


def _pump(sock: Any, tty: bool) -> None:
    """Copy stdin to the container and its output to stdout/stderr until it closes the stream."""
    raw = _raw_socket(sock)
    stdin = getattr(sys.stdin, "buffer", None)

    def feed() -> None:
        try:
            if stdin is not None:
                fd = stdin.fileno() if hasattr(stdin, "fileno") else None
                while True:
                    data = os.read(fd, 4096) if fd is not None else stdin.read1(4096)
                    if not data:
                        break
                    raw.sendall(data)
        except (OSError, ValueError, AttributeError) as e:
            logger.debug("stdin closed", error=str(e))
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_WR)

    threading.Thread(target=feed, name="pushdock-run-stdin", daemon=True).start()
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    err = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
    buf = b""
    while True:
        try:
            chunk = raw.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        if tty:
            _write(out, sys.stdout, chunk)
            continue
        buf += chunk
        while len(buf) >= 8:  # docker's multiplexed frames: stream, 3 zero bytes, big-endian length
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            stream, payload, buf = buf[0], buf[8:8 + size], buf[8 + size:]
            if stream == 2:
                _write(err, sys.stderr, payload)
            else:
                _write(out, sys.stdout, payload)


def _write(binary: Any, text: Any, data: bytes) -> None:
    if binary is not None:
        binary.write(data)
        binary.flush()
    else:
        text.write(data.decode("utf-8", "replace"))
        text.flush()
