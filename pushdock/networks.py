"""Named networks apps share (`network:*`, Dokku's names): which networks an app's containers join, and when.

An app's properties `network/APP/PHASE` (Dokku's keys):
- `initial-network`: the one network a container is created on (instead of the engine's default bridge);
- `attach-post-create`: networks joined once the container is created, before it starts (apps that must reach
  each other from their first line of code);
- `attach-post-deploy`: networks joined once the instance passed its checks, before the proxy routes to it (so
  a half-started instance never answers on the network).
On every network an instance has the aliases `APP.PROCESS` (every instance of the type: the engine's DNS answers
with all of them) and `APP.PROCESS.N`; other apps reach `http://APP.web:PORT/`. One-off `run` containers and
deploy tasks join the app's networks too (at creation, as they never pass checks), without aliases.

Networks are made by `network:create` and labelled with the data dir: an app may join only those (never a
network of another pushdock, nor the engine's `bridge`/`host`/`none`). The engine work is the scheduler's
(schedulers/docker_networks.py: bridge networks on docker-local, attachable overlay networks on swarm).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pushdock.errors import UsageError

if TYPE_CHECKING:
    from pushdock.state import State

PLUGIN = "network"
PHASES = ("attach-post-create", "attach-post-deploy", "initial-network")
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}\Z")
RESERVED = ("bridge", "host", "none", "ingress", "docker_gwbridge")
LABEL = "pushdock.network"  # the network's name, on networks pushdock made (with pushdock.data-dir)


def check_name(name: str) -> str:
    if name in RESERVED:
        raise UsageError(f"{name!r} is the engine's own network: create one with network:create NAME")
    if not NAME.match(name):
        raise UsageError(f"{name[:70]!r} is not a network name (letters, digits, '_', '.', '-'; at most 63)")
    return name


def check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise UsageError(f"unknown network property {phase[:40]!r}: use {', '.join(PHASES)}")
    return phase


def get(state: State, app: str) -> dict[str, list[str]]:
    """{phase: [network, ...]} of the app (initial-network holds at most one)."""
    out: dict[str, list[str]] = {}
    for phase in PHASES:
        raw = (state.get(PLUGIN, app, phase) or "").strip()
        names = [n for n in raw.split(",") if n and NAME.match(n)]
        if names:
            out[phase] = names
    return out


def set_phase(state: State, app: str, phase: str, names: list[str]) -> None:
    if names:
        state.set(PLUGIN, app, phase, ",".join(names))
    else:
        state.delete(PLUGIN, app, phase)


def aliases(app: str, process: str, index: int | None) -> list[str]:
    """The DNS names of an instance on the app's networks."""
    out = [f"{app}.{process}"]
    if index is not None:
        out.append(f"{app}.{process}.{index}")
    return out


def users(state: State, network: str) -> list[str]:
    """Apps whose settings name `network`."""
    return sorted(app for app in state.list_apps() if any(network in v for v in get(state, app).values()))
