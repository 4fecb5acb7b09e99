"""The settings the schedulers plugin keeps (scheduler, registry, swarm nodes) and the scheduler switch.

Properties (per app, else `--global`, else the default):
  scheduler  selected      docker-local | swarm          (ctx.scheduler reads it; default PUSHDOCK_SCHEDULER)
  scheduler  routing-mesh  auto | on | off               (swarm: publish web through the mesh; auto = IPVS here)
  scheduler  max-per-node  N                             (swarm: at most N tasks of a process type per node)
  scheduler  constraints   JSON {process: [constraint]} (swarm: placement per process type, scheduler-swarm:set)
  registry   server        HOST[:PORT][/PATH]            (swarm: push HOST/pushdock/APP:vN, services pull it)
  swarm      nodes (global JSON) {node id: {"address": ..., "engine": ...}}
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushdock.errors import UsageError
from pushdock.state import GLOBAL

if TYPE_CHECKING:
    from pushdock.context import Context

SCHEDULER = "scheduler"
REGISTRY = "registry"
KEYS = ("selected", "routing-mesh", "max-per-node")
MESH_VALUES = ("auto", "on", "off")
MAX_PER_NODE = 50
NODE_KEYS = ("address", "engine")
REGISTRY_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,252})(?::\d{1,5})?(?:/[a-z0-9._-]+){0,4}\Z")
ADDRESS = re.compile(r"^[A-Za-z0-9.:\[\]-]{1,255}\Z")
CONSTRAINT = re.compile(r"^(?:node|engine)\.[A-Za-z0-9._/-]{1,200}\s*(?:==|!=)\s*[A-Za-z0-9._:/=-]{1,200}\Z")
PROCESS = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
ENGINE_URL = re.compile(r"^(?:tcp|ssh|unix|http|https)://\S{1,500}\Z")


# -- reading ----------------------------------------------------------------------------------------
def scheduler_value(ctx: Context, app: str | None, key: str) -> tuple[str | None, str]:
    """(value, where it came from: app | global | default)."""
    if app is not None:
        found = ctx.state.get(SCHEDULER, app, key)
        if found:
            return found, "app"
    found = ctx.state.get(SCHEDULER, GLOBAL, key)
    if found:
        return found, "global"
    return (ctx.settings.scheduler if key == "selected" else None), "default"


def routing_mesh(ctx: Context, app: str) -> bool:
    """Whether the app's web services publish through the routing mesh (auto: this kernel has IPVS)."""

    value = scheduler_value(ctx, app, "routing-mesh")[0] or "auto"
    return kernel_has_ipvs() if value == "auto" else value == "on"


def max_per_node(ctx: Context, app: str) -> int | None:
    value = scheduler_value(ctx, app, "max-per-node")[0]
    return int(value) if value else None


def constraints(ctx: Context, app: str, process: str) -> list[str]:
    """The placement constraints of the app's process type (`scheduler-swarm:set APP constraints PROCESS ...`)."""
    return list(ctx.state.get_json(SCHEDULER, app, "constraints", {}).get(process) or [])


def set_constraints(ctx: Context, app: str, process: str, values: list[str]) -> None:
    """Store a process type's constraints (none: unset); UsageError on a malformed one, nothing stored then."""
    if not PROCESS.match(process):
        raise UsageError(f"process type must look like web or worker, not {process[:40]!r}")
    for value in values:
        if not CONSTRAINT.match(value):
            raise UsageError(f"a constraint must look like node.role==worker or node.labels.zone!=b, "
                             f"not {value[:60]!r}")
    table = dict(ctx.state.get_json(SCHEDULER, app, "constraints", {}))
    if values:
        table[process] = values
    else:
        table.pop(process, None)
    if table:
        ctx.state.set_json(SCHEDULER, app, "constraints", table)
    else:
        ctx.state.delete(SCHEDULER, app, "constraints")


def registry_server(ctx: Context, app: str | None = None) -> str | None:
    if app is not None and (found := ctx.state.get(REGISTRY, app, "server")):
        return found
    return ctx.state.get(REGISTRY, GLOBAL, "server") or None


def node_settings(ctx: Context) -> dict[str, dict[str, str]]:
    return dict(ctx.state.get_json("swarm", GLOBAL, "nodes", {}))


# -- validating and writing -------------------------------------------------------------------------
def check_scheduler_value(ctx: Context, key: str, value: str) -> str:
    """The value to store ("" unsets), or UsageError."""
    if key not in KEYS:
        raise UsageError(f"unknown scheduler property {key!r} (known: {', '.join(KEYS)})")
    if value == "":
        return ""
    if key == "selected":
        known = sorted(ctx.bus.registry("schedulers"))
        if value not in known:
            raise UsageError(f"unknown scheduler {value!r} (known: {', '.join(known)})")
    elif key == "routing-mesh":
        if value not in MESH_VALUES:
            raise UsageError(f"routing-mesh must be one of {', '.join(MESH_VALUES)}, not {value[:40]!r}")
    elif not (value.isdigit() and 1 <= int(value) <= MAX_PER_NODE):
        raise UsageError(f"max-per-node must be a number from 1 to {MAX_PER_NODE}, not {value[:40]!r}")
    return value


def store(ctx: Context, plugin: str, scope: str, key: str, value: str) -> None:
    if value:
        ctx.state.set(plugin, scope, key, value)
    else:
        ctx.state.delete(plugin, scope, key)


def check_registry(value: str) -> str:
    value = value.strip().rstrip("/")
    if value and not REGISTRY_HOST.match(value):
        raise UsageError(f"registry server must look like HOST[:PORT][/PATH], not {value[:60]!r}")
    return value


def set_node(ctx: Context, node_id: str, key: str, value: str) -> None:
    if key not in NODE_KEYS:
        raise UsageError(f"unknown node property {key!r} (known: {', '.join(NODE_KEYS)})")
    pattern = ADDRESS if key == "address" else ENGINE_URL
    if value and not pattern.match(value):
        shape = "an IP address or host name" if key == "address" else "a Docker engine URL (tcp://HOST:2376, ssh://...)"
        raise UsageError(f"{key} must be {shape}, not {value[:60]!r}")
    with ctx.state.global_lock("swarm-nodes"):
        table = node_settings(ctx)
        entry = dict(table.get(node_id, {}))
        if value:
            entry[key] = value
        else:
            entry.pop(key, None)
        if entry:
            table[node_id] = entry
        else:
            table.pop(node_id, None)
        ctx.state.set_json("swarm", GLOBAL, "nodes", table)


def report(ctx: Context, app: str) -> dict[str, Any]:
    selected, where = scheduler_value(ctx, app, "selected")
    mesh, mesh_where = scheduler_value(ctx, app, "routing-mesh")
    per_node, _ = scheduler_value(ctx, app, "max-per-node")
    return {
        "selected": selected,
        "selected from": where,
        "global": ctx.state.get(SCHEDULER, GLOBAL, "selected") or f"({ctx.settings.scheduler})",
        "routing mesh": f"{mesh or 'auto'} ({'on' if routing_mesh(ctx, app) else 'off'})",
        "routing mesh from": mesh_where,
        "max per node": per_node or "",
        "constraints": " ".join(f"{p}:{','.join(c)}" for p, c in sorted(
            ctx.state.get_json(SCHEDULER, app, "constraints", {}).items())),
        "registry": registry_server(ctx, app) or "",
    }


def kernel_has_ipvs(root: Path = Path("/")) -> bool:
    """Whether this host's kernel can do IPVS, which the routing mesh needs (loaded, built in or a module)."""
    if (root / "proc/net/ip_vs").exists() or (root / "sys/module/ip_vs").exists():
        return True
    modules = root / "lib/modules" / os.uname().release
    for listing in ("modules.builtin", "modules.dep"):
        try:
            if re.search(r"/ip_vs\.ko", (modules / listing).read_text(errors="replace")):
                return True
        except OSError:
            continue
    return False
