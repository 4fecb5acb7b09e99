"""Docker Swarm as the swarm scheduler sees it: the manager, nodes, services, tasks and their addresses.

One release's process type is one service, `{app}-{process}-v{N}`, labelled like docker-local's
containers (`pushdock.app|process|release|data-dir`, on the service and on its task containers) plus
`pushdock.scheduler=swarm`. Web services publish PORT in host mode on a port the engine picks per task
(research/proxies.md §5: the routing mesh needs IPVS, and start-first with a fixed host port never
starts), so the proxy routes to `node address:published port` of every task. With the routing mesh on,
a web service also publishes PORT through the mesh and the proxy routes to `every node:mesh port`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock import docker_options, networks, resources, storage
from pushdock.errors import PushdockError
from pushdock.routing import Upstream
from pushdock.scheduler import Instance
from schedulers import engine as eng
from schedulers.engine import LABEL_APP, LABEL_DATA_DIR, LABEL_PROCESS, LABEL_RELEASE
from schedulers.swarm.nodes import Node, nodes

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import Release

LABEL_SCHEDULER = "pushdock.scheduler"
LABEL_ONE_OFF = eng.LABEL_ONE_OFF
SWARM_SERVICE_LABEL = eng.SWARM_SERVICE_LABEL
NAME_MAX = 63  # service names are DNS labels
RESTART_DELAY_NS = 1_000_000_000
FAILED_STATES = frozenset({"failed", "rejected", "orphaned", "complete", "shutdown"})


# -- services ---------------------------------------------------------------------------------------
def service_name(app: str, process: str, number: int, suffix: str | None = None) -> str:
    """`app-web-v3` (`-a1b2` appended when that name is taken, e.g. by a restart of the same release)."""
    tail = f"-{process}-v{number}" + (f"-{suffix}" if suffix else "")
    if len(app) + len(tail) > NAME_MAX:
        digest = hashlib.sha256(app.encode()).hexdigest()[:6]
        app = f"{app[: NAME_MAX - len(tail) - 7].rstrip('-')}-{digest}"
    return f"{app}{tail}"


def new_suffix() -> str:
    return secrets.token_hex(2)


def service_labels(ctx: Context, release: Release, process: str) -> dict[str, str]:
    return {
        LABEL_APP: release.app,
        LABEL_PROCESS: process,
        LABEL_RELEASE: str(release.number),
        LABEL_DATA_DIR: eng.data_dir_label(ctx),
        LABEL_SCHEDULER: "swarm",
    }


def service_env(release: Release, process: str) -> list[str]:
    """docker-local's environment; DYNO comes from the task's slot (swarm expands templates in Env)."""
    env = eng.container_env(release, eng.Slot(process, 0))
    env["DYNO"] = process + ".{{.Task.Slot}}"
    return [f"{k}={v}" for k, v in env.items()]


def endpoint_ports(port: int, *, web: bool, mesh: bool) -> list[dict[str, Any]]:
    """Host mode on an engine-picked port per task (always: readiness probes each task), plus the mesh."""
    if not web:
        return []
    ports = [{"Protocol": "tcp", "TargetPort": port, "PublishMode": "host"}]
    if mesh:
        ports.append({"Protocol": "tcp", "TargetPort": port, "PublishMode": "ingress"})
    return ports


def create_service(
    ctx: Context,
    release: Release,
    process: str,
    *,
    replicas: int,
    image: str,
    constraints: list[str],
    mesh: bool,
    max_per_node: int | None,
    stop_timeout: int | None = None,
) -> Any:
    """Create one process type's service; a taken name gets a random suffix. Returns the Service model.

    `stop_timeout`: the SIGTERM -> SIGKILL grace of its tasks (the app's `checks:set APP stop-timeout`),
    PUSHDOCK_STOP_TIMEOUT if None."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    from docker.types import (  # noqa: PLC0415 -- start-up: docker loads when first used
        ContainerSpec,
        EndpointSpec,
        Placement,
        RestartPolicy,
        ServiceMode,
        TaskTemplate,
    )

    labels = service_labels(ctx, release, process)
    web = process == "web"
    # the app's deploy options a task's ContainerSpec has fields for (the rest: swarm_ignored, said by the deploy)
    options, option_labels, _ = docker_options.swarm_spec(docker_options.for_phase(ctx.state, release.app, "deploy"))
    spec = ContainerSpec(
        image,
        command=eng.container_command(release, process, eng.image_entrypoint(release.image)),
        env=service_env(release, process),
        labels=option_labels | labels,
        stop_signal="SIGTERM",
        stop_grace_period=(ctx.settings.stop_timeout if stop_timeout is None else stop_timeout) * 1_000_000_000,
        mounts=storage.swarm_mounts(ctx.state, release),  # bind mounts: the source must exist on each node
        **({"init": True} | options),  # init: PID 1 forwards SIGTERM (see docker_local)
    )
    # a task joins every network of the app at creation (a swarm service has no later attach), with its aliases
    joined = task_networks(ctx, release.app)
    template = TaskTemplate(
        spec,
        networks=[{"Target": n, "Aliases": networks.aliases(release.app, process, None)} for n in joined] or None,
        resources=resources.swarm_resources(resources.for_process(ctx.state, release.app, process)),
        restart_policy=RestartPolicy("any", delay=RESTART_DELAY_NS),
        placement=Placement(constraints=constraints or None, maxreplicas=max_per_node),
    )
    ports = endpoint_ports(eng.container_port(release), web=web, mesh=mesh)
    api = eng.client().api
    for suffix in (None, new_suffix(), new_suffix()):
        name = service_name(release.app, process, release.number, suffix)
        try:
            made = api.create_service(
                template, name=name, labels=labels, mode=ServiceMode("replicated", replicas=replicas),
                endpoint_spec=EndpointSpec(mode="dnsrr" if not mesh else "vip", ports=ports or None),
            )
        except docker.errors.APIError as e:
            if e.status_code == 409:  # name taken
                continue
            raise
        logger.info("service created", service=name, replicas=replicas)
        return eng.client().services.get(made["ID"])
    raise PushdockError(f"could not find a free service name for {release.app} {process} v{release.number}")


def task_networks(ctx: Context, app: str) -> list[str]:
    """Every network of the app (`network:set`) and of the services linked to it (the app-networks trigger)."""
    named = [n for names in networks.get(ctx.state, app).values() for n in names]
    return list(dict.fromkeys([*named, *eng.networks(ctx, app)]))


def app_services(
    ctx: Context, app: str, *, process: str | None = None, release: int | None = None
) -> list[Any]:
    """The app's services in this data dir (one-off ones excluded), oldest first."""
    filters = eng.app_filters(ctx, app, process=process)
    if release is not None:
        filters["label"].append(f"{LABEL_RELEASE}={release}")
    found = [s for s in eng.client().services.list(filters=filters)
             if LABEL_ONE_OFF not in (s.attrs.get("Spec", {}).get("Labels") or {})]
    return sorted(found, key=lambda s: (s.attrs.get("CreatedAt", ""), s.name))


def labels_of(service: Any) -> dict[str, str]:
    return dict((service.attrs.get("Spec") or {}).get("Labels") or {})


def release_of(service: Any) -> int | None:
    try:
        return int(labels_of(service)[LABEL_RELEASE])
    except (KeyError, ValueError):
        return None


def process_of(service: Any) -> str:
    return labels_of(service).get(LABEL_PROCESS, "?")


def replicas_of(service: Any) -> int:
    return int(((service.attrs.get("Spec") or {}).get("Mode") or {}).get("Replicated", {}).get("Replicas") or 0)


def mesh_port(service: Any) -> int | None:
    """The port the routing mesh publishes the service on (every node), if it does."""
    for p in (service.attrs.get("Endpoint") or {}).get("Ports") or []:
        if p.get("PublishMode") == "ingress" and p.get("PublishedPort"):
            return int(p["PublishedPort"])
    return None


def tasks_of(services: list[Any]) -> list[dict[str, Any]]:
    """Every task the manager keeps for these services (current ones and a short history)."""
    if not services:
        return []
    return list(eng.client().api.tasks(filters={"service": [s.id for s in services]}))


def task_state(task: dict[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State") or "unknown")


def is_current(task: dict[str, Any]) -> bool:
    """A task the orchestrator wants running (not one it replaced or is shutting down)."""
    return task.get("DesiredState") in ("running", "ready", "accepted")


def task_upstream(task: dict[str, Any], by_node: dict[str, Node]) -> Upstream | None:
    """`node address:published port` of a host-mode task."""
    node = by_node.get(str(task.get("NodeID") or ""))
    for p in ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or []:
        if p.get("PublishMode") == "host" and p.get("PublishedPort") and node is not None:
            return Upstream(node.address, int(p["PublishedPort"]))
    return None


def failure_of(task: dict[str, Any], by_node: dict[str, Node]) -> str | None:
    """Why a task is dead (one line, naming the node when the swarm has several), or None."""
    state = task_state(task)
    if state not in FAILED_STATES:
        return None
    status = task.get("Status") or {}
    err = " ".join(str(status.get("Err") or "").split())
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if state == "complete":
        why = "exited with status 0"
    elif state == "failed" and code not in (None, 0) and "non-zero exit" in err:
        why = f"exited with status {code}"
    else:
        why = f"was {state}" + (f": {err}" if err else "")
    if "No such image" in err:
        why += " (the node has no copy of the image: set a registry with `registry:set --global server HOST`" \
               " or the node's engine with `swarm:set NODE engine URL`)"
    node = by_node.get(str(task.get("NodeID") or ""))
    if node is not None and len(by_node) > 1:
        why += f" on node {node.hostname}"
    return why


def pending_problem(task: dict[str, Any]) -> str | None:
    """The scheduler's complaint about a task it cannot place ("no suitable node (...)")."""
    status = task.get("Status") or {}
    err = " ".join(str(status.get("Err") or "").split())
    return err if task_state(task) == "pending" and err else None


def instance_of(service: Any, task: dict[str, Any], by_node: dict[str, Node], restarts: int) -> Instance:
    upstream = task_upstream(task, by_node)
    port = mesh_port(service)
    node = by_node.get(str(task.get("NodeID") or ""))
    if port is not None and node is not None:
        upstream = Upstream(node.address, port)
    slot = int(task.get("Slot") or 0)
    return Instance(
        app=labels_of(service).get(LABEL_APP, ""),
        process=process_of(service),
        index=slot,
        release=release_of(service) or 0,
        id=str(task["ID"]),
        name=f"{service.name}.{slot}",
        state=task_state(task),
        upstream=upstream,
        restarts=restarts,
    )


def instances(ctx: Context, app: str) -> list[Instance]:
    """One instance per slot of every service: its newest task, restarts = the failed ones before it."""
    services = app_services(ctx, app)
    if not services:
        return []
    by_node = {n.id: n for n in nodes(ctx)}
    by_service: dict[str, list[dict[str, Any]]] = {}
    for t in tasks_of(services):
        by_service.setdefault(str(t.get("ServiceID")), []).append(t)
    found = []
    for s in services:
        by_slot: dict[int, list[dict[str, Any]]] = {}
        for t in by_service.get(s.id, []):
            by_slot.setdefault(int(t.get("Slot") or 0), []).append(t)
        for slot_tasks in by_slot.values():
            slot_tasks.sort(key=lambda t: (is_current(t), t.get("CreatedAt", "")))
            newest = slot_tasks[-1]
            restarts = sum(1 for t in slot_tasks[:-1] if task_state(t) in ("failed", "rejected"))
            found.append(instance_of(s, newest, by_node, restarts))
    return sorted(found, key=lambda i: (i.release, eng.process_order(i.process), i.index, i.name))


# -- removal ----------------------------------------------------------------------------------------
def remove_services(services: list[Any]) -> list[tuple[Any, str | None]]:
    """Remove services (their tasks get SIGTERM and the grace period); (service, error or None) each."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    out: list[tuple[Any, str | None]] = []
    for s in services:
        try:
            s.remove()
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            logger.warning("service not removed", service=s.name, error=eng.one_line(e))
            out.append((s, eng.one_line(e)))
            continue
        logger.info("service removed", service=s.name)
        out.append((s, None))
    return out


def wait_containers_gone(service_ids: set[str], timeout: float) -> bool:
    """Wait until this engine runs no task container of these services (other nodes stop theirs alike)."""
    if not service_ids:
        return True
    deadline = time.monotonic() + timeout
    while True:
        # sparse: no inspect per container, which would race with the removals being waited for
        listed = eng.client().containers.list(all=True, sparse=True, filters={"label": SWARM_SERVICE_LABEL})
        left = [c for c in listed if (c.attrs.get("Labels") or {}).get(SWARM_SERVICE_LABEL) in service_ids]
        if not left:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def swarm_ignored(ctx: Context, app: str) -> list[str]:
    """The app's deploy options a swarm service cannot take (shm size, devices, privileged...)."""
    return docker_options.swarm_spec(docker_options.for_phase(ctx.state, app, "deploy"))[2]
