"""swarm:init and swarm:report: turning swarm mode on, and what the swarm looks like to pushdock."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock.errors import PushdockError, UsageError
from schedulers import engine as eng
from schedulers.swarm import nodes as sn
from schedulers.swarm import settings as props

if TYPE_CHECKING:
    from pushdock.context import Context

HOST_PORT = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9a-fA-F:]{2,45}\])(?::(\d{1,5}))?\Z")
ADDR = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|[0-9a-fA-F:]{2,45})\Z")


def check_addresses(advertise_addr: str, listen_addr: str) -> None:
    m = HOST_PORT.match(listen_addr)
    if not m or not m.group(1) or not 0 < int(m.group(1)) < 65536:
        raise UsageError(f"--listen-addr must be ADDRESS:PORT, not {listen_addr[:60]!r}")
    if not (ADDR.match(advertise_addr) or HOST_PORT.match(advertise_addr)):
        raise UsageError(f"--advertise-addr must be an address or interface name, not {advertise_addr[:60]!r}")


def init(advertise_addr: str, listen_addr: str, *, heartbeat: int = 5) -> str:
    """Turn swarm mode on (this engine becomes the first manager); a message for the user."""
    check_addresses(advertise_addr, listen_addr)
    with eng.engine_errors(doing="turning on swarm mode"):
        info = sn.swarm_state()
        state = info.get("LocalNodeState")
        if state == "active":
            role = "a manager" if info.get("ControlAvailable") else "a worker"
            return f"swarm mode is already on: this node ({str(info.get('NodeID'))[:12]}) is {role}"
        if state not in ("inactive", None):
            raise PushdockError(f"swarm mode is {state} on this engine: settle it with the docker CLI first")
        node = eng.client().swarm.init(advertise_addr=advertise_addr, listen_addr=listen_addr,
                                       dispatcher_heartbeat_period=heartbeat * 1_000_000_000)
    logger.info("swarm initialised", node=node, advertise=advertise_addr, listen=listen_addr)
    return (f"swarm mode is on: this node ({str(node)[:12]}) is the manager, listening on {listen_addr}; "
            "add nodes with the command `docker swarm join-token worker` prints")


def report(ctx: Context) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(fields, one row per node)."""
    with eng.engine_errors(doing="reading the swarm"):
        info = sn.swarm_state()
        active = info.get("LocalNodeState") == "active"
        manager = active and bool(info.get("ControlAvailable"))
        nodes = sn.nodes(ctx) if manager else []
    has_ipvs = props.kernel_has_ipvs()
    fields = {
        "state": info.get("LocalNodeState") or "unknown",
        "node": str(info.get("NodeID") or "")[:12],
        "manager": "yes" if manager else "no",
        "nodes": len(nodes),
        "ipvs in this kernel": "yes (routing mesh usable)" if has_ipvs
        else "no (routing mesh unusable: host-mode ports)",
        "registry": props.registry_server(ctx) or "(none)",
    }
    if not active:
        fields["hint"] = "run `pushdock swarm:init` to turn swarm mode on"
    rows = [{"id": n.id[:12], "hostname": n.hostname, "role": n.role, "state": n.state,
             "availability": n.availability, "address": n.address, "engine": n.engine or ("local" if n.local else "")}
            for n in nodes]
    return fields, rows
