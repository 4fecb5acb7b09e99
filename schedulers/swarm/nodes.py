"""The swarm's manager and nodes as pushdock sees them: who runs tasks, and the address the proxy dials.

A task published in host mode is reached at its node's address: the node's advertise address
(`Status.Addr`), 127.0.0.1 for this node (host-mode ports bind 0.0.0.0), or what `swarm:set NODE
address IP` says. `swarm:set NODE engine URL` names the engine release images are streamed to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pushdock.errors import PushdockError
from schedulers import engine as eng
from schedulers.swarm.settings import node_settings

if TYPE_CHECKING:
    from pushdock.context import Context

NOT_ACTIVE = "swarm mode is not active on this Docker engine: run `pushdock swarm:init` first"


def swarm_state() -> dict[str, Any]:
    """`docker info`'s Swarm section (LocalNodeState, NodeID, ControlAvailable, ...)."""
    return dict(eng.client().info().get("Swarm") or {})


def require_manager() -> str:
    """This engine's node id; a one-line error unless it is an active swarm manager."""
    info = swarm_state()
    if info.get("LocalNodeState") != "active":
        raise PushdockError(NOT_ACTIVE)
    if not info.get("ControlAvailable"):
        raise PushdockError("this Docker engine is a swarm worker: run pushdock on a manager node")
    return str(info["NodeID"])


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    role: str
    state: str  # ready | down | unknown | disconnected
    availability: str  # active | pause | drain
    addr: str  # what the node reports (its advertise address)
    address: str  # what the proxy dials for tasks published on this node
    engine: str | None  # Docker engine URL to stream images to (swarm:set NODE engine URL)
    local: bool

    @property
    def schedulable(self) -> bool:
        return self.state == "ready" and self.availability == "active"


def nodes(ctx: Context) -> list[Node]:
    """Every node of the swarm; this one first. Its tasks are dialled on 127.0.0.1 (host-mode ports bind 0.0.0.0)."""

    local_id = swarm_state().get("NodeID")
    configured = node_settings(ctx)
    found = []
    for n in eng.client().nodes.list():
        attrs = n.attrs
        spec, desc, status = attrs.get("Spec") or {}, attrs.get("Description") or {}, attrs.get("Status") or {}
        mine = configured.get(n.id, {})
        local = n.id == local_id
        addr = str(status.get("Addr") or "")
        found.append(Node(
            id=n.id, hostname=str(desc.get("Hostname") or ""), role=str(spec.get("Role") or ""),
            state=str(status.get("State") or "unknown"), availability=str(spec.get("Availability") or ""),
            addr=addr, address=mine.get("address") or ("127.0.0.1" if local else addr),
            engine=mine.get("engine"), local=local,
        ))
    return sorted(found, key=lambda n: (not n.local, n.hostname, n.id))


def find_node(ctx: Context, ref: str) -> Node:
    """A node by id, id prefix or hostname."""
    matches = [n for n in nodes(ctx) if ref in (n.id, n.hostname) or (len(ref) >= 4 and n.id.startswith(ref))]
    if len(matches) != 1:
        known = ", ".join(f"{n.hostname} ({n.id[:12]})" for n in nodes(ctx))
        what = "is ambiguous" if matches else "is not a node of this swarm"
        raise PushdockError(f"{ref!r} {what} (nodes: {known})")
    return matches[0]


