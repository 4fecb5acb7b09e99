"""The Docker engine as both schedulers see it: one client per process, labels, names, instances, routing.

Every container pushdock starts carries the labels below. `pushdock.data-dir` scopes it to one
pushdock instance, so several instances on one engine never touch each other's containers: every
query here filters on it.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock import docker_client
from pushdock.errors import DeployFailed, PushdockError
from pushdock.routing import Upstream
from pushdock.scheduler import Instance, Route
from schedulers import crash_output, process_command

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import Release

LABEL_APP = "pushdock.app"
LABEL_PROCESS = "pushdock.process"
LABEL_RELEASE = "pushdock.release"
LABEL_INDEX = "pushdock.index"
LABEL_DATA_DIR = "pushdock.data-dir"
LABEL_ONE_OFF = "pushdock.one-off"  # `run` and release-phase containers: never an instance of the app
SWARM_SERVICE_LABEL = "com.docker.swarm.service.id"  # on the containers of a swarm service's tasks
DEFAULT_RESTART_POLICY = "unless-stopped"  # survives engine restarts, not `docker stop`

def client() -> Any:
    """The docker SDK client of this process (pushdock/docker_client.py, shared with the builders)."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        return docker_client.client()
    except docker.errors.DockerException as e:
        raise PushdockError(f"cannot reach the Docker engine: {one_line(e)}") from e


@contextlib.contextmanager
def engine_errors(kind: type[PushdockError] = PushdockError, doing: str = "") -> Iterator[None]:
    """Turn docker SDK and connection errors into a one-line PushdockError of `kind`."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        prefix = f"{doing}: " if doing else ""
        raise kind(f"{prefix}Docker engine error: {one_line(e)}") from e


def one_line(e: BaseException) -> str:
    text = getattr(e, "explanation", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())


def data_dir_label(ctx: Context) -> str:
    return str(ctx.settings.data_dir.absolute())


def app_filters(ctx: Context, app: str, *, process: str | None = None) -> dict[str, Any]:
    labels = [f"{LABEL_APP}={app}", f"{LABEL_DATA_DIR}={data_dir_label(ctx)}"]
    if process is not None:
        labels.append(f"{LABEL_PROCESS}={process}")
    return {"label": labels}


def app_containers(
    ctx: Context, app: str, *, process: str | None = None, running: bool = False, one_off: bool = False
) -> list[Any]:
    """The app's containers in this data dir, oldest first (inspected: `.attrs` is complete).

    One-off containers (`run`, release phase) are left out unless `one_off`: a deploy never retires them.
    Swarm task containers (same labels, made by the engine for a service) are never docker-local's.
    """
    found = client().containers.list(
        all=not running, filters=app_filters(ctx, app, process=process), ignore_removed=True
    )
    found = [c for c in found if SWARM_SERVICE_LABEL not in (c.labels or {})
             and (one_off or LABEL_ONE_OFF not in (c.labels or {}))]
    return sorted(found, key=lambda c: (c.attrs.get("Created", ""), c.name))


def app_container_ids(ctx: Context, app: str, *, process: str | None = None) -> list[str]:
    """The ids of app_containers(ctx, app, process=process), from one engine call (the SDK's list inspects each)."""
    found = client().api.containers(all=True, filters=app_filters(ctx, app, process=process))
    return [str(c["Id"]) for c in found if SWARM_SERVICE_LABEL not in (c.get("Labels") or {})
            and LABEL_ONE_OFF not in (c.get("Labels") or {})]


def one_off_containers(ctx: Context, app: str) -> list[Any]:
    """The app's one-off containers (`run` sessions, release-phase tasks) in this data dir."""
    filters = {"label": [*app_filters(ctx, app)["label"], LABEL_ONE_OFF]}
    return list(client().containers.list(all=True, filters=filters, ignore_removed=True))


def networks(ctx: Context, app: str) -> list[str]:
    """Networks the app's new containers join besides the default bridge (the app-networks trigger: the private
    networks of the services linked to it)."""
    found: list[str] = []
    for part in ctx.bus.call("app_networks", ctx=ctx, app=app):
        found += part.split() if isinstance(part, str) else list(part or [])
    return list(dict.fromkeys(found))


def join_networks(api: Any, cid: str, names: Sequence[str]) -> None:
    """Connect a created (not yet started) container to `names`."""
    for name in names:
        api.connect_container_to_network(cid, name)


def one_off_labels(ctx: Context, release: Release, kind: str) -> dict[str, str]:
    return {LABEL_APP: release.app, LABEL_RELEASE: str(release.number), LABEL_DATA_DIR: data_dir_label(ctx),
            LABEL_ONE_OFF: kind}


def restart_policy(ctx: Context, app: str) -> dict[str, Any]:
    """The engine restart policy of the app's ready instances (`ps:set APP restart-policy ...`)."""
    raw = (ctx.state.get("ps", app, "restart-policy") or DEFAULT_RESTART_POLICY).strip()
    name, _, retries = raw.partition(":")
    if name == "on-failure":
        return {"Name": name, "MaximumRetryCount": int(retries) if retries.isdigit() else 0}
    if name in ("no", "always", "unless-stopped"):
        return {"Name": name}
    return {"Name": DEFAULT_RESTART_POLICY}


@dataclass(frozen=True, order=True)
class Slot:
    """One instance of a process type: `web.2`."""

    process: str
    index: int

    def __str__(self) -> str:
        return f"{self.process}.{self.index}"


# -- what checking a started instance ends in (readiness, healthchecks) --------------------------
class NotReady(Exception):
    """An instance failed its readiness check: `reason` is one line, `lines` its last log lines."""

    def __init__(self, reason: str, lines: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lines = lines or []


class Aborted(Exception):
    """Another instance of the same deploy failed first: stop checking this one."""


@dataclass
class Started:
    slot: Slot
    container: Any
    upstream: Upstream | None


def process_order(process: str) -> tuple[bool, str]:
    """web first, then the other process types by name."""
    return (process != "web", process)


def slots(formation: dict[str, int]) -> list[Slot]:
    """Every instance a formation asks for, web first."""
    return [
        Slot(p, i)
        for p in sorted(formation, key=process_order)
        for i in range(1, max(0, int(formation[p])) + 1)
    ]


def check_formation(release: Release) -> None:
    """Every scaled process type other than web needs a command (web may run the image's own CMD)."""
    unknown = sorted(p for p, n in release.formation.items() if n > 0 and p != "web" and p not in release.processes)
    if unknown:
        known = ", ".join(sorted(release.processes)) or "none"
        raise PushdockError(f"v{release.number} has no process type {unknown[0]!r} (it has: {known})")


def container_name(app: str, slot: Slot, release: int, suffix: str | None = None) -> str:
    """`app.web.1.v3.1a2b`: readable in `docker ps`, unique thanks to the random suffix."""
    return f"{app}.{slot.process}.{slot.index}.v{release}.{suffix or secrets.token_hex(2)}"


def container_port(release: Release) -> int:
    """The port the web process listens on: the app's PORT if configured, else the release's web_port."""
    raw = release.env.get("PORT", str(release.web_port))
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise PushdockError(f"PORT must be a TCP port number (1-65535), not {raw!r}")
    return port


def container_env(release: Release, slot: Slot) -> dict[str, str]:
    """The app's environment plus what the platform provides, as Heroku does (PORT, DYNO)."""
    env = dict(release.env)
    env["PORT"] = str(container_port(release))
    env["DYNO"] = str(slot)
    env["PUSHDOCK_RELEASE"] = f"v{release.number}"
    # tini (--init) then signals the whole process group: `sh -c "a && b"` children get SIGTERM too,
    # as every process of a Heroku dyno does.
    env.setdefault("TINI_KILL_PROCESS_GROUP", "1")
    return env


def container_labels(ctx: Context, release: Release, slot: Slot) -> dict[str, str]:
    return {
        LABEL_APP: release.app,
        LABEL_PROCESS: slot.process,
        LABEL_RELEASE: str(release.number),
        LABEL_INDEX: str(slot.index),
        LABEL_DATA_DIR: data_dir_label(ctx),
    }


def container_command(release: Release, process: str, entrypoint: Sequence[str] = ()) -> list[str] | None:
    """The Procfile command as the container's command (process_command); None runs the image's own CMD.

    `entrypoint`: the app image's own ENTRYPOINT (`image_entrypoint`), which then gets the command's words.
    The command is the app owner's own text, run inside their own container: the shell is theirs.
    """
    cmd = release.processes.get(process, "").strip()
    return process_command.command_argv(cmd, entrypoint) if cmd else None


def image_entrypoint(image: str) -> tuple[str, ...]:
    """The app's own ENTRYPOINT of a local image; () if none (or the builder's own: /start, the CNB launcher)."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        config = client().api.inspect_image(image).get("Config") or {}
    except docker.errors.ImageNotFound:
        return ()  # creating the container reports the missing image in its own words
    return process_command.image_entrypoint(config)


def free_port() -> int:
    """A port nothing listens on now (docker may still lose a race for it: callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_taken(e: BaseException) -> bool:
    text = one_line(e)
    return "port is already allocated" in text or "address already in use" in text


def slot_of(container: Any) -> Slot | None:
    labels = container.labels or {}
    try:
        return Slot(labels[LABEL_PROCESS], int(labels[LABEL_INDEX]))
    except (KeyError, ValueError):
        return None


def release_of(container: Any) -> int | None:
    try:
        return int((container.labels or {})[LABEL_RELEASE])
    except (KeyError, ValueError):
        return None


def upstream_of(container: Any) -> Upstream | None:
    """The published host address: the live binding if running, else the configured one."""
    attrs = container.attrs
    live = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    configured = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    for table in (live, configured):
        for bindings in table.values():
            for b in bindings or []:
                if b.get("HostPort"):
                    host = b.get("HostIp") or "127.0.0.1"
                    return Upstream("127.0.0.1" if host in ("0.0.0.0", "::") else host, int(b["HostPort"]))
    return None


def state_of(container: Any) -> str:
    return str((container.attrs.get("State") or {}).get("Status") or container.status)


def instance_of(container: Any) -> Instance | None:
    slot, number = slot_of(container), release_of(container)
    if slot is None or number is None:
        return None
    return Instance(
        app=container.labels[LABEL_APP],
        process=slot.process,
        index=slot.index,
        release=number,
        id=container.id,
        name=container.name,
        state=state_of(container),
        upstream=upstream_of(container),
        restarts=int(container.attrs.get("RestartCount") or 0),
    )


def exit_reason(container: Any) -> str | None:
    """Why a container is not (or no longer) a healthy instance, or None while it runs undisturbed."""
    state = container.attrs.get("State") or {}
    status = state.get("Status")
    restarts = int(container.attrs.get("RestartCount") or 0)
    if status == "running":
        # Once restarted, the engine no longer shows the exit status of the crash.
        return None if restarts == 0 else f"crashed and was restarted {restarts}x"
    how = f"exited with status {state.get('ExitCode', '?')}"
    if state.get("OOMKilled"):
        how += " (out of memory)"
    if status == "restarting":
        how += ", restarting"
    elif status not in ("exited", "dead"):
        how = f"is {status}"
    return how


def last_log_lines(container: Any, n: int = crash_output.SHOWN) -> list[str]:
    """The container's last meaningful log lines, stderr first (crash_output)."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    try:
        err = container.logs(stdout=False, stderr=True, tail=crash_output.TAIL)
        out = container.logs(stdout=True, stderr=False, tail=crash_output.TAIL)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return []  # best effort: the container may be gone already
    return crash_output.last_lines(_text_lines(err), _text_lines(out), n)


def _text_lines(raw: bytes) -> list[str]:
    return raw.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")


def switch_route(route: Route, upstreams: list[Upstream], label: str) -> None:
    """Point the app's route at `upstreams`; any failure is the deploy's, named after `label`."""
    try:
        route(upstreams)
    except PushdockError as e:
        raise DeployFailed(f"{label}: proxy switch failed: {e}") from e
    except Exception as e:
        logger.exception("route failed")
        raise DeployFailed(f"{label}: proxy switch failed ({type(e).__name__})") from e
