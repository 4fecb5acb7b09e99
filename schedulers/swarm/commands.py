"""Commands of the schedulers plugin: scheduler:*, swarm:*, registry:*. Thin: parse, call, print."""

from __future__ import annotations

import click

from pushdock.apps import authorized_app, require_admin
from pushdock.commands import echo_progress, format_option, group, print_report, print_table
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.state import GLOBAL
from schedulers.swarm.node_commands import COMMANDS as NODE_COMMANDS
from schedulers.swarm.node_commands import scheduler_swarm

DEFAULT_ADVERTISE = "127.0.0.1"
DEFAULT_LISTEN = "127.0.0.1:2377"


def _scope(ctx: Context, is_global: bool, args: tuple[str, ...], usage: str) -> tuple[str, tuple[str, ...]]:
    """(`--global` or the app, the rest of the arguments)."""
    if is_global:
        require_admin(ctx)
        return GLOBAL, args
    if not args:
        raise UsageError(f"usage: {usage}")
    return authorized_app(ctx, args[0]), args[1:]


def _changed(ctx: Context, app: str, summary: str) -> None:
    if app != GLOBAL:
        ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=summary)


# -- scheduler:set / scheduler:report ----------------------------------------------------------------
@group("scheduler", "Choose the scheduler that runs an app (docker-local or swarm).", default_verb="report")
def scheduler() -> None:
    pass


SCHEDULER_SET_USAGE = "scheduler:set [--global|APP] selected|routing-mesh|max-per-node [VALUE]"


@scheduler.command("set")
@click.option("--global", "is_global", is_flag=True, help="Set the default of every app (admin only).")
@click.argument("args", nargs=-1, required=True, metavar="[APP] KEY [VALUE]")
@click.pass_obj
def scheduler_set(ctx: Context, is_global: bool, args: tuple[str, ...]) -> None:
    """Set an app's (or the default) scheduler settings.

    KEY is `selected` (docker-local or swarm), `routing-mesh` (auto, on or off: swarm web services publish
    through the mesh; auto = when this kernel has IPVS) or `max-per-node` (1-50 tasks of a process type per
    node). No VALUE unsets. Changing `selected` of a running app moves it now, with zero downtime (or not
    at all); `--global selected` leaves running apps where they run (it pins them).
    """
    from schedulers.swarm import settings as props  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs
    from schedulers.swarm import switch  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    scope, rest = _scope(ctx, is_global, args, SCHEDULER_SET_USAGE)
    if not 1 <= len(rest) <= 2:
        raise UsageError(f"usage: {SCHEDULER_SET_USAGE}")
    key = rest[0]
    value = props.check_scheduler_value(ctx, key, rest[1] if len(rest) == 2 else "")
    if key == "selected" and scope == GLOBAL:
        pinned = switch.select_global(ctx, value)
        click.echo(f"-----> Default scheduler: {value or ctx.settings.scheduler}")
        if pinned:
            click.echo(f"       {len(pinned)} running app(s) stay where they run: {', '.join(pinned)} "
                       "(move each with `scheduler:set APP selected NAME`)")
        return
    if key == "selected":
        with ctx.state.app_lock(scope, timeout=ctx.settings.lock_timeout):
            message = switch.select(ctx, scope, value, echo_progress())
        click.echo(f"-----> {message}")
    else:
        props.store(ctx, props.SCHEDULER, scope, key, value)
        click.echo(f"-----> {'every app' if scope == GLOBAL else scope}: {key} "
                   f"{'= ' + value if value else 'unset'} (from the next deploy)")
    _changed(ctx, scope, f"scheduler:set {key} {value}".rstrip())


@scheduler.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def scheduler_report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's scheduler and swarm settings."""
    from schedulers.swarm import settings as props  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    print_report(f"{app} scheduler information", props.report(ctx, app), fmt)


# -- swarm:init / swarm:report / swarm:set -----------------------------------------------------------
@group("swarm", "Docker Swarm mode on this engine, for the swarm scheduler.", default_verb="report")
def swarm() -> None:
    pass


@swarm.command("init")
@click.option("--advertise-addr", default=DEFAULT_ADVERTISE, show_default=True,
              help="Address other nodes reach this manager on (use the host's LAN address for several nodes).")
@click.option("--listen-addr", default=DEFAULT_LISTEN, show_default=True, help="Address:port the manager listens on.")
@click.option("--heartbeat", type=click.IntRange(1, 60), default=5, show_default=True,
              help="Seconds between a node's heartbeats: a lost node is declared down after a few are missed.")
@click.pass_obj
def swarm_init(ctx: Context, advertise_addr: str, listen_addr: str, heartbeat: int) -> None:
    """Turn on swarm mode (this engine: the manager).

    Nothing happens if swarm mode is on already. The defaults suit one machine; for several nodes use the
    host's LAN address (`--advertise-addr 10.0.0.5 --listen-addr 0.0.0.0:2377`).
    """
    from schedulers.swarm import admin as swarm_admin  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    require_admin(ctx)
    click.echo(f"-----> {swarm_admin.init(advertise_addr, listen_addr, heartbeat=heartbeat)}")


@swarm.command("report")
@format_option
@click.pass_obj
def swarm_report(ctx: Context, fmt: str) -> None:
    """Show swarm mode, the nodes and their addresses.

    For each node: the address the proxy dials for its tasks and the engine images are sent to.
    """
    from schedulers.swarm import admin as swarm_admin  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    require_admin(ctx)
    fields, nodes = swarm_admin.report(ctx)
    if fmt == "json":
        print_report("swarm", {**fields, "nodes": nodes}, fmt)
        return
    print_report("swarm information", fields, fmt)
    if nodes:
        print_table(nodes, ["id", "hostname", "role", "state", "availability", "address", "engine"], fmt)


@swarm.command("set")
@click.argument("node")
@click.argument("key", type=click.Choice(["address", "engine"]), metavar="KEY")
@click.argument("value", required=False, default="")
@click.pass_obj
def swarm_set(ctx: Context, node: str, key: str, value: str) -> None:
    """Set a node's proxy address or engine URL.

    `address`: what the proxy dials for tasks published on NODE (default: the node's advertise address;
    127.0.0.1 for this one). `engine`: a Docker engine URL (tcp://HOST:2375, ssh://USER@HOST) release
    images are streamed to when no registry is set. No VALUE unsets.
    """
    from schedulers.engine import engine_errors  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs
    from schedulers.swarm import nodes as sn  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs
    from schedulers.swarm import settings as props  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    require_admin(ctx)
    with engine_errors(doing="looking up the node"):
        sn.require_manager()
        found = sn.find_node(ctx, node)
    props.set_node(ctx, found.id, key, value)
    click.echo(f"-----> node {found.hostname}: {key} {'= ' + value if value else 'unset'}")


# -- registry:set / registry:report ------------------------------------------------------------------
@group("registry", "The registry swarm nodes pull release images from.", default_verb="report")
def registry() -> None:
    pass


@registry.command("set")
@click.option("--global", "is_global", is_flag=True, help="Set it for every app (admin only).")
@click.argument("args", nargs=-1, required=True, metavar="[APP] server [HOST]")
@click.pass_obj
def registry_set(ctx: Context, is_global: bool, args: tuple[str, ...]) -> None:
    """Set the registry swarm nodes pull from.

    HOST[:PORT][/PATH]; on the swarm scheduler every release is pushed as HOST/pushdock/APP:vN and its
    services pull it by digest. No HOST unsets.
    """
    from schedulers.swarm import settings as props  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    usage = "registry:set [--global|APP] server [HOST]"
    scope, rest = _scope(ctx, is_global, args, usage)
    if not 1 <= len(rest) <= 2 or rest[0] != "server":
        raise UsageError(f"usage: {usage}")
    value = props.check_registry(rest[1] if len(rest) == 2 else "")
    props.store(ctx, props.REGISTRY, scope, "server", value)
    click.echo(f"-----> {'every app' if scope == GLOBAL else scope}: registry {value or 'unset'}")
    _changed(ctx, scope, f"registry:set server {value}".rstrip())


@registry.command("report")
@click.argument("app", required=False)
@format_option
@click.pass_obj
def registry_report(ctx: Context, app: str | None, fmt: str) -> None:
    """Show the registry and release image names."""
    from schedulers.swarm import settings as props  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    if app is not None:
        authorized_app(ctx, app)
    server = props.registry_server(ctx, app)
    fields = {
        "server": server or "",
        "global server": props.registry_server(ctx, None) or "",
        "image": f"{server}/pushdock/{app or 'APP'}:vN" if server
        else "(none: images stay on the nodes that have them)",
    }
    print_report(f"{app or 'global'} registry information", fields, fmt)


for _command in NODE_COMMANDS:  # swarm:nodes, join-token, drain, activate, registry
    swarm.add_command(_command)
COMMANDS = (scheduler, swarm, registry, scheduler_swarm)
