"""docker-local one-off containers: `run` (attached to this process's stdio) and release-phase tasks.

Both are containers of the release's image with its environment, labelled `pushdock.one-off` so no
deploy retires them, and removed when they end. A task streams its output to the deploy's progress
and is killed after its timeout. `run` attaches stdin/stdout/stderr; with a terminal it allocates a
TTY in the container, puts the local terminal in raw mode and follows its size.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock import attach, docker_options, resources, storage
from pushdock.errors import DeployFailed, PushdockError, TaskFailed
from schedulers import docker_networks, process_command
from schedulers import engine as eng
from schedulers.engine import Slot

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import Release



# -- release-phase tasks -----------------------------------------------------------------------------
def run_task(ctx: Context, release: Release, command: str, progress: Progress, *, timeout: float,
             label: str, commit_to: str | None = None) -> None:
    """Run `command` once in a new container of the release; DeployFailed on a non-zero exit or a timeout.

    `commit_to`: on success, the container's files become image `commit_to` (`commit`).
    """
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    shown = command if len(command) <= 120 else command[:117] + "..."
    progress.step(f"Running the {label} command: {shown}")
    labels = eng.one_off_labels(ctx, release, label)
    if commit_to:
        # The engine copies a committed container's labels into the image, and every container of the image
        # would inherit them: no `pushdock.one-off` there (app, release and data dir are set on each anyway).
        # Without it, the container still carries the app's labels and is removed below, or as a stray.
        del labels[eng.LABEL_ONE_OFF]
    with eng.engine_errors(DeployFailed, f"{label} command"):
        api = eng.client().api
        host, extra, own_labels = one_off_options(ctx, release, label)
        made = api.create_container(
            release.image, command=task_command(release.image, command), name=_name(release, label),
            environment=eng.container_env(release, Slot(label, 1)), labels=own_labels | labels,
            stop_signal="SIGTERM", use_config_proxy=False, host_config=api.create_host_config(**host), **extra,
        )
    cid = made["Id"]
    with eng.engine_errors(DeployFailed, f"{label} command"), _removed_on_error(cid):
        docker_networks.connect(ctx, release.app, cid, ATTACH, [])
    reader: threading.Thread | None = None
    try:
        with eng.engine_errors(DeployFailed, f"{label} command"):
            eng.join_networks(api, cid, eng.networks(ctx, release.app))  # in the try: a failure removes it
            api.start(cid)
            reader = threading.Thread(target=_stream, args=(cid, progress), name="pushdock-task-logs", daemon=True)
            reader.start()
            try:
                code = int(api.wait(cid, timeout=timeout).get("StatusCode", 1))
            except requests.exceptions.RequestException:  # the wait's read timeout
                _kill(cid)
                raise DeployFailed(f"{label} command did not finish within {timeout:g}s") from None
            if code == 0 and commit_to:
                commit(cid, release.image, commit_to)
    finally:
        if reader is not None:
            reader.join(5)
        _remove(cid)
    if code != 0:
        raise TaskFailed(f"{label} command failed with exit status {code}", status=code)
    logger.info("release task done", task=label, release=release.number, committed=commit_to)


def commit(cid: str, source: str, target: str) -> None:
    """The files of container `cid` (of image `source`) as image `target`, with `source`'s own config.

    The engine merges the container's environment into a committed image's: every variable the task got
    (the app's config, secrets too) is given the value `source` has for it, or none (`KEY=`), so no value
    of the app's config is ever stored in an image. A container's environment replaces these at start.
    """
    api = eng.client().api
    config = dict(api.inspect_image(source).get("Config") or {})
    task_env = (api.inspect_container(cid).get("Config") or {}).get("Env") or []
    own = list(config.get("Env") or [])
    own_keys = {item.partition("=")[0] for item in own}
    config["Env"] = own + sorted({f"{item.partition('=')[0]}=" for item in task_env} - {f"{k}=" for k in own_keys})
    repository, _, tag = target.rpartition(":")
    api.commit(cid, repository=repository, tag=tag, conf=config, message="predeploy", pause=False)


def task_command(image: str, command: str) -> list[str]:
    """A deploy task's container command: through the shell, or as arguments to the app's ENTRYPOINT."""
    return process_command.command_argv(command, eng.image_entrypoint(image))


def _stream(cid: str, progress: Progress) -> None:
    """The task's output, line by line, until it ends (or its container is removed)."""
    buf = b""
    try:
        for chunk in eng.client().api.logs(cid, stream=True, follow=True, stdout=True, stderr=True):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                progress.detail(line.decode("utf-8", "replace").rstrip("\r"))
    except Exception as e:  # the container went away: what was read is shown
        logger.debug("task log stream ended", error=str(e))
    if buf:
        progress.detail(buf.decode("utf-8", "replace").rstrip("\r"))


def _kill(cid: str) -> None:
    with contextlib.suppress(Exception):
        eng.client().api.kill(cid)


def _remove(cid: str) -> None:
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    try:
        eng.client().api.remove_container(cid, force=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        logger.warning("one-off container not removed", container=cid[:12], error=eng.one_line(e))


def limits_of(ctx: Context, release: Release, kind: str) -> dict[str, Any]:
    """A one-off container's limits (those of process type `kind`: `release`, `run`…, or the app's default) and
    the release's mounts, as create_host_config keywords."""
    return resources.host_config(resources.for_process(ctx.state, release.app, kind)) | storage.binds(ctx.state,
                                                                                                       release)


ATTACH = ("attach-post-create", "attach-post-deploy")  # a one-off container passes no checks: it joins at once


def one_off_options(ctx: Context, release: Release, kind: str) -> tuple[dict[str, Any], dict[str, Any],
                                                                         dict[str, str]]:
    """A one-off container's create_host_config keywords (limits, mounts, the app's `run` docker-options, its
    initial network), other create_container keywords, and the options' labels."""
    applied = docker_options.for_phase(ctx.state, release.app, "run")
    network = docker_networks.create_options(ctx, release.app, [])
    host = docker_options.host_config(applied, {"init": True, **limits_of(ctx, release, kind),
                                                **network.pop("host", {})})
    return host, network, applied.labels


@contextlib.contextmanager
def _removed_on_error(cid: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        _remove(cid)
        raise


def _name(release: Release, kind: str) -> str:
    return f"{release.app}.{kind}.v{release.number}.{secrets.token_hex(3)}"


# -- run ---------------------------------------------------------------------------------------------
def command_of(release: Release, argv: list[str], entrypoint: Sequence[str] = ()) -> list[str] | None:
    """What `run APP ...` runs: a Procfile type's command, a quoted command line, or argv as is.

    A command line runs as a Procfile command does (process_command): through the shell with `exec`, or
    as words for the app's own ENTRYPOINT.
    """
    if len(argv) == 1 and argv[0] in release.processes:
        command = release.processes[argv[0]].strip()
        return process_command.command_argv(command, entrypoint) if command else None  # none: the image's CMD
    if len(argv) == 1 and any(c.isspace() for c in argv[0]):
        return process_command.command_argv(argv[0], entrypoint)
    return argv or None


def run(ctx: Context, release: Release, argv: list[str], *, tty: bool) -> int:
    """A one-off container of the release attached to this process's stdin/stdout/stderr; its exit status."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    with eng.engine_errors(doing=f"running a one-off container of {release.app}"):
        api = eng.client().api
        host, extra, own_labels = one_off_options(ctx, release, "run")
        try:
            made = api.create_container(
                release.image, command=command_of(release, argv, eng.image_entrypoint(release.image)),
                name=_name(release, "run"),
                environment=eng.container_env(release, Slot("run", 1)),
                labels=own_labels | eng.one_off_labels(ctx, release, "run"),
                stdin_open=True, tty=tty, stop_signal="SIGTERM", use_config_proxy=False,
                host_config=api.create_host_config(**host), **extra,
            )
        except docker.errors.ImageNotFound:
            raise PushdockError(f"the image of {release.name} ({release.image}) is gone") from None
        cid = made["Id"]
        with _removed_on_error(cid):
            docker_networks.connect(ctx, release.app, cid, ATTACH, [])
    try:
        with eng.engine_errors(doing=f"running a one-off container of {release.app}"), attach.ended_by_signals():
            eng.join_networks(api, cid, eng.networks(ctx, release.app))  # in the try: a failure removes it
            sock = api.attach_socket(cid, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            api.start(cid)
            fds = attach.Fds.of_sys()
            with attach.raw(fds.stdin if tty else None):
                if tty:
                    threading.Thread(target=attach.follow_size, args=(api.resize, cid, fds), name="pushdock-run-size",
                                     daemon=True).start()
                attach.pump(sock, fds, tty)
            return int(api.wait(cid).get("StatusCode", 1))
    finally:
        _remove(cid)


# -- enter: a process in a running container -----------------------------------------------------------
def exec_in(container_id: str, argv: list[str], *, tty: bool, app: str) -> int:
    """Run argv in a running container attached to this process's stdio (as `run` is); its exit status."""
    with eng.engine_errors(doing=f"entering a container of {app}"):
        return attach.exec_in(eng.client().api, container_id, argv, tty=tty)


def pick_instance(instances: Sequence[Any], app: str, *, process: str | None, container_id: str | None) -> Any:
    """The running instance `enter` goes into: by container id (or name), by `web` or `web.2`, or the only
    process type running. Only the app's own instances are candidates."""
    running = [i for i in instances if i.state == "running"]
    if container_id is not None:
        found = [i for i in running if container_id in (i.name, i.id) or
                 (len(container_id) >= 12 and i.id.startswith(container_id))]
        if not found:
            raise PushdockError(f"{app} has no running container {container_id[:64]!r} (see `ps:report {app}`)")
        return found[0]
    types = sorted({i.process for i in running})
    if not running:
        raise PushdockError(f"{app} has no running container")
    if process is None:
        if len(types) > 1:
            raise PushdockError(f"{app} runs {', '.join(types)}: say which, e.g. `enter {app} {types[0]}`")
        process = types[0]
    name, _, index = process.partition(".")
    found = [i for i in running if i.process == name and (not index or str(i.index) == index)]
    if not found:
        raise PushdockError(f"{app} has no running {process} container (running: {', '.join(types)})")
    return sorted(found, key=lambda i: (-i.release, i.index))[0]


