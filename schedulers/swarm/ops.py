"""Operating the swarm's nodes: what runs where (`swarm:nodes`), joining (`swarm:join-token`), and taking a
node out of service and back (`swarm:drain`, `swarm:activate`).

Draining with swarm alone (`docker node update --availability drain`) stops the node's tasks first and starts
their replacements after; with host-mode ports the proxy only learns the new task's port once it runs, so
requests fail in between. `drain` here therefore pauses the node first (no new task is placed on it, the
running ones keep serving), moves every app with a task there by a zero-downtime restart (new services on the
other nodes, checked, routed, then the old ones retired), and only then sets the node to `drain`, which moves
whatever is left (services pushdock does not own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loguru import logger

from hooks import pipeline
from pushdock.errors import PushdockError, UsageError
from schedulers import engine as eng
from schedulers.swarm import engine as sw
from schedulers.swarm import nodes as sn

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress

ROLES = ("worker", "manager")


def node_rows(ctx: Context) -> list[dict[str, Any]]:
    """One row per node: state, availability, address and the running tasks of this data dir's apps."""
    with eng.engine_errors(doing="reading the swarm's nodes"):
        sn.require_manager()
        nodes = sn.nodes(ctx)
        per_node: dict[str, dict[str, int]] = {n.id: {} for n in nodes}
        for service in eng.client().services.list(filters={"label": f"{eng.LABEL_DATA_DIR}={eng.data_dir_label(ctx)}"}):
            app = sw.labels_of(service).get(eng.LABEL_APP, "?")
            for task in service.tasks(filters={"desired-state": "running"}):
                node_id = str(task.get("NodeID") or "")
                if node_id in per_node and (task.get("Status") or {}).get("State") == "running":
                    per_node[node_id][app] = per_node[node_id].get(app, 0) + 1
    return [{"id": n.id[:12], "hostname": n.hostname, "role": n.role, "state": n.state,
             "availability": n.availability, "address": n.address,
             "tasks": sum(per_node[n.id].values()),
             "apps": " ".join(f"{app}={count}" for app, count in sorted(per_node[n.id].items()))}
            for n in nodes]


def join_token(role: str) -> tuple[str, str]:
    """(token, the manager address nodes join at) for `role`."""
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}, not {role[:40]!r}")
    with eng.engine_errors(doing="reading the join token"):
        sn.require_manager()
        client = eng.client()
        client.swarm.reload()
        token = client.swarm.attrs["JoinTokens"]["Worker" if role == "worker" else "Manager"]
        managers = client.info()["Swarm"].get("RemoteManagers") or []
    return str(token), str(managers[0]["Addr"]) if managers else ""


def set_availability(ctx: Context, ref: str, availability: str) -> sn.Node:
    """Set a node's availability (active, pause, drain); the node as it was."""
    with eng.engine_errors(doing=f"setting the node's availability to {availability}"):
        sn.require_manager()
        node = sn.find_node(ctx, ref)
        engine_node = eng.client().nodes.get(node.id)
        spec = dict(engine_node.attrs["Spec"])
        spec["Availability"] = availability
        engine_node.update(spec)
    logger.info("node availability", node=node.hostname, id=node.id, availability=availability)
    return node


def apps_on(ctx: Context, node_id: str) -> list[str]:
    """This data dir's apps with a task meant to run on the node."""
    apps = set()
    for service in eng.client().services.list(filters={"label": f"{eng.LABEL_DATA_DIR}={eng.data_dir_label(ctx)}"}):
        if any(str(t.get("NodeID") or "") == node_id for t in service.tasks(filters={"desired-state": "running"})):
            apps.add(sw.labels_of(service).get(eng.LABEL_APP, ""))
    return sorted(a for a in apps if a)


def drain(ctx: Context, ref: str, progress: Progress) -> list[str]:
    """Move every app off the node with zero downtime, then drain it; the apps moved.

    If an app cannot move (its new tasks fail), the node is set back to `active` and the error is raised:
    nothing is half-done (the apps moved before run on the other nodes, which is fine).
    """
    node = set_availability(ctx, ref, "pause")
    if not any(n.schedulable for n in sn.nodes(ctx)):
        set_availability(ctx, node.id, node.availability)
        raise PushdockError(f"node {node.hostname} is the only node that can run tasks: nothing to move them to")
    moved = []
    try:
        with eng.engine_errors(doing="listing the node's tasks"):
            apps = apps_on(ctx, node.id)
        for app in apps:
            if ctx.state.current_release(app) is None or ctx.state.get("ps", app, "stopped"):
                continue
            progress.step(f"Moving {app} off node {node.hostname}")
            with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
                pipeline.restart(ctx, app, progress)
            moved.append(app)
    except BaseException:
        set_availability(ctx, node.id, node.availability)
        raise
    set_availability(ctx, node.id, "drain")
    return moved


def activate(ctx: Context, ref: str) -> sn.Node:
    """Make the node take tasks again (new ones: running tasks stay where they are)."""
    return set_availability(ctx, ref, "active")
