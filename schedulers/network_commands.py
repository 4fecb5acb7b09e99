"""network:create|destroy|list|info|set|report — named networks apps talk over (Dokku's names and keys).

The model is pushdock/networks.py, the engine work schedulers/docker_networks.py. Making and removing networks
is admin only; a deployer may set the networks of its own apps. As in Dokku, `network:set` restarts nothing: it
applies from the next deploy (`ps:rebuild`/`ps:restart` to apply it now), and is recorded in refs/meta/config
(`[network]` of pushdock.toml).
"""

from __future__ import annotations

import click

from pushdock import networks
from pushdock.apps import authorized_app, require_admin
from pushdock.commands import format_option, group, print_report, print_table
from pushdock.context import Context
from pushdock.errors import Conflict, UsageError
from pushdock.networks import PHASES
from schedulers import docker_networks


@group("network", "Named networks apps (and services) talk over.", default_verb="list")
def network() -> None:
    pass


def _swarm(ctx: Context) -> bool:
    return bool(ctx.scheduler().name == "swarm")


@network.command("create")
@click.argument("name")
@click.pass_obj
def create(ctx: Context, name: str) -> None:
    """Create an attachable network (admin only): bridge, or overlay with the swarm scheduler."""
    require_admin(ctx)
    driver = docker_networks.create(ctx, name, swarm=_swarm(ctx))
    click.echo(f"-----> Created network {name} ({driver})")


@network.command("destroy")
@click.argument("name")
@click.option("--force", is_flag=True, help="Disconnect attached containers and clear the apps' settings naming it.")
@click.pass_obj
def destroy(ctx: Context, name: str, force: bool) -> None:
    """Destroy a network (admin only); refused while apps name it or containers are on it, unless --force."""
    require_admin(ctx)
    docker_networks.require(ctx, name)
    users = networks.users(ctx.state, name)
    if users and not force:
        raise Conflict(f"network {name} is set for {', '.join(users[:5])}: network:set APP PROPERTY to clear it, "
                       "or give --force")
    disconnected = docker_networks.destroy(ctx, name, force=force)
    for app in users:
        with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
            for phase, names in networks.get(ctx.state, app).items():
                networks.set_phase(ctx.state, app, phase, [n for n in names if n != name])
        ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"network:destroy {name} --force")
    click.echo(f"-----> Destroyed network {name}" + (f" ({len(disconnected)} container(s) disconnected)"
                                                    if disconnected else ""))


@network.command("list")
@format_option
@click.pass_obj
def list_(ctx: Context, fmt: str) -> None:
    """List the networks made by network:create."""
    rows = docker_networks.listing(ctx)
    print_table([r | {"containers": len(r["containers"])} for r in rows] if fmt == "text" else rows,
                ["name", "driver", "scope", "subnet", "containers"], fmt)


@network.command("info")
@click.argument("name")
@format_option
@click.pass_obj
def info(ctx: Context, name: str, fmt: str) -> None:
    """Show a network: driver, subnet, the containers attached and the apps that set it (a deployer's own)."""
    with_apps = docker_networks.info(docker_networks.require(ctx, name)) | {
        "apps": networks.users(ctx.state, name)}
    if ctx.identity.role != "admin":  # a deployer sees its own apps on the network, not the others'
        with_apps["apps"] = [a for a in with_apps["apps"] if ctx.identity.may_use(a)]
        with_apps["containers"] = [c for c in with_apps["containers"]
                                   if any(c.startswith(f"{a}.") for a in with_apps["apps"])]
    if fmt == "text":
        with_apps = {k: " ".join(v) if isinstance(v, list) else v for k, v in with_apps.items()}
    print_report(f"network {name}", with_apps, fmt)


@network.command("set")
@click.argument("app")
@click.argument("phase", metavar="PROPERTY")
@click.argument("names", nargs=-1, metavar="[NETWORK...]")
@click.pass_obj
def set_(ctx: Context, app: str, phase: str, names: tuple[str, ...]) -> None:
    """Set PROPERTY (attach-post-create, attach-post-deploy, initial-network) to networks; none clears it."""
    authorized_app(ctx, app)
    networks.check_phase(phase)
    wanted = list(dict.fromkeys(networks.check_name(n) for n in names))
    if phase == "initial-network" and len(wanted) > 1:
        raise UsageError("initial-network takes one network")
    for name in wanted:
        docker_networks.require(ctx, name)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        networks.set_phase(ctx.state, app, phase, wanted)
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"network:set {app} {phase} {' '.join(wanted)}")
    click.echo(f"-----> {'Set' if wanted else 'Cleared'} {phase}; takes effect on the next deploy "
               "(ps:rebuild or ps:restart to apply it now)")


@network.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's network settings (Dokku's keys) and the DNS aliases of its web instances."""
    authorized_app(ctx, app)
    current = networks.get(ctx.state, app)
    if fmt == "json":
        print_report(f"{app} network", {f"network-{p}": current.get(p, []) for p in PHASES}
                     | {"network-web-alias": f"{app}.web"}, fmt)
        return
    print_report(f"{app} network", {f"Network {p.replace('-', ' ')}": ",".join(current.get(p, [])) for p in PHASES}
                 | {"Network web alias": f"{app}.web"}, fmt)


COMMANDS = [network]
