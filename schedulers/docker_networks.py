"""Named networks on the engine (`network:*`, pushdock/networks.py): made, listed, removed, joined.

Networks pushdock makes carry `pushdock.data-dir` and `pushdock.network` labels; only those are listed, shown,
destroyed or joined. With the swarm scheduler they are attachable overlay networks (services and one-off
containers on every node join them), else bridge networks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock import networks
from pushdock.errors import Conflict, NotFound, UsageError
from schedulers import engine as eng

if TYPE_CHECKING:
    from pushdock.context import Context


def _ours(ctx: Context) -> dict[str, list[str]]:
    return {"label": [f"{eng.LABEL_DATA_DIR}={eng.data_dir_label(ctx)}", networks.LABEL]}


def find(ctx: Context, name: str) -> Any | None:
    """The engine network `name` if pushdock (this data dir) made it."""
    for net in eng.client().networks.list(names=[name], filters=_ours(ctx)):
        if net.name == name:
            return net
    return None


def require(ctx: Context, name: str) -> Any:
    with eng.engine_errors(doing="looking up a network"):
        net = find(ctx, networks.check_name(name))
    if net is None:
        raise NotFound(f"network {name} does not exist (an admin creates it with network:create {name})")
    return net


def create(ctx: Context, name: str, *, swarm: bool) -> str:
    """Make the network; Conflict if a network of that name exists (pushdock's or not). Returns the driver."""
    networks.check_name(name)
    driver = "overlay" if swarm else "bridge"
    with eng.engine_errors(doing=f"creating network {name}"):
        client = eng.client()
        if any(n.name == name for n in client.networks.list(names=[name])):
            raise Conflict(f"network {name} already exists")
        client.networks.create(name, driver=driver, attachable=True, check_duplicate=True,
                               labels={eng.LABEL_DATA_DIR: eng.data_dir_label(ctx), networks.LABEL: name})
    logger.info("network created", network=name, driver=driver)
    return driver


def attached(net: Any) -> list[str]:
    """Names of the containers on the network."""
    net.reload()
    return sorted(str(c.get("Name", cid[:12])) for cid, c in (net.attrs.get("Containers") or {}).items())


def destroy(ctx: Context, name: str, *, force: bool) -> list[str]:
    """Remove the network; Conflict while containers are on it, unless `force` (they are disconnected first).
    Returns the containers disconnected."""
    net = require(ctx, name)
    with eng.engine_errors(doing=f"removing network {name}"):
        on = attached(net)
        if on and not force:
            raise Conflict(f"network {name} has {len(on)} container(s) attached ({', '.join(on[:3])}): "
                           "give --force to disconnect them")
        for cid in list(net.attrs.get("Containers") or {}):
            net.disconnect(cid, force=True)
        net.remove()
    logger.info("network removed", network=name, disconnected=len(on))
    return on


def listing(ctx: Context) -> list[dict[str, Any]]:
    with eng.engine_errors(doing="listing networks"):
        nets = eng.client().networks.list(filters=_ours(ctx))
        return [info(n) for n in sorted(nets, key=lambda n: n.name)]


def info(net: Any) -> dict[str, Any]:
    on = attached(net)
    ipam = (net.attrs.get("IPAM") or {}).get("Config") or [{}]
    return {"name": net.name, "id": net.id[:12], "driver": net.attrs.get("Driver"),
            "scope": net.attrs.get("Scope"), "subnet": ipam[0].get("Subnet", ""),
            "attachable": bool(net.attrs.get("Attachable")), "containers": on}


# -- containers joining ------------------------------------------------------------------------------------
def _checked(ctx: Context, app: str, names: list[str]) -> list[str]:
    for name in names:
        if find(ctx, name) is None:
            raise UsageError(f"network {name} (network:set {app}) does not exist: create it with network:create")
    return names


def create_options(ctx: Context, app: str, aliases: list[str]) -> dict[str, Any]:
    """create_container keywords for the app's initial network, if it has one: `host` (network_mode) and
    `networking_config` (its aliases)."""
    initial = networks.get(ctx.state, app).get("initial-network", [])
    if not initial:
        return {}
    name = _checked(ctx, app, initial[:1])[0]
    api = eng.client().api
    return {"host": {"network_mode": name},
            "networking_config": api.create_networking_config(
                {name: api.create_endpoint_config(aliases=aliases or None)})}


def connect(ctx: Context, app: str, container_id: str, phases: tuple[str, ...], aliases: list[str]) -> None:
    """Join the container to the app's networks of `phases` (attach-post-create, attach-post-deploy)."""
    wanted = networks.get(ctx.state, app)
    names = list(dict.fromkeys(n for p in phases for n in wanted.get(p, [])))
    if not names:
        return
    _checked(ctx, app, names)
    api = eng.client().api
    for name in names:
        api.connect_container_to_network(container_id, name, aliases=aliases or None)
