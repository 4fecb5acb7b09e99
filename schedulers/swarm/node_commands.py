"""swarm:nodes, swarm:join-token, swarm:drain, swarm:activate, swarm:registry: the swarm's nodes from pushdock.

Thin: parse, call schedulers/swarm_ops.py, print. Added to the `swarm` group of swarm_commands.py.
"""

from __future__ import annotations

import click

from pushdock.apps import authorized_app, require_admin
from pushdock.commands import echo_progress, format_option, group, print_report, print_table
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.state import GLOBAL


@click.command("nodes")
@format_option
@click.pass_obj
def swarm_nodes(ctx: Context, fmt: str) -> None:
    """List the nodes: state, availability, address and the tasks of pushdock's apps on each."""
    from schedulers.swarm import ops as swarm_ops  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    require_admin(ctx)
    print_table(swarm_ops.node_rows(ctx),
                ["id", "hostname", "role", "state", "availability", "address", "tasks", "apps"], fmt)


@click.command("join-token")
@click.argument("role", required=False, default="worker", metavar="[worker|manager]")
@click.option("-q", "--quiet", is_flag=True, help="Print the token only.")
@click.pass_obj
def swarm_join_token(ctx: Context, role: str, quiet: bool) -> None:
    """Print the command a new node runs to join the swarm (as a worker by default)."""
    from schedulers.swarm import ops as swarm_ops  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    require_admin(ctx)
    token, addr = swarm_ops.join_token(role)
    click.echo(token if quiet else f"docker swarm join --token {token} {addr}")


@click.command("drain")
@click.argument("node")
@click.pass_obj
def swarm_drain(ctx: Context, node: str) -> None:
    """Take NODE out of service with zero downtime.

    No new task goes to NODE; every app with a task there is restarted (new services on the other nodes,
    checked and routed before the old ones stop); then NODE is set to `drain`. NODE: id, id prefix or hostname.
    """
    from schedulers.swarm import ops as swarm_ops  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    require_admin(ctx)
    moved = swarm_ops.drain(ctx, node, echo_progress())
    click.echo(f"-----> node {node} drained" + (f"; moved {', '.join(moved)}" if moved else ""))


@click.command("activate")
@click.argument("node")
@click.pass_obj
def swarm_activate(ctx: Context, node: str) -> None:
    """Let NODE take tasks again (running tasks stay put: `ps:restart APP` spreads an app anew)."""
    from schedulers.swarm import ops as swarm_ops  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    require_admin(ctx)
    found = swarm_ops.activate(ctx, node)
    click.echo(f"-----> node {found.hostname} ({found.id[:12]}) active")


@click.command("registry")
@click.argument("args", nargs=-1, required=True, metavar="set [URL] | report")
@format_option
@click.pass_obj
def swarm_registry(ctx: Context, args: tuple[str, ...], fmt: str) -> None:
    """Set (or show) the registry every node pulls release images from.

    `swarm:registry set HOST[:PORT][/PATH]`: every release is pushed once as HOST/pushdock/APP:vN and its
    services pull it by digest on each node (the same as `registry:set --global server`). No URL unsets.
    """
    from schedulers.swarm import settings as props  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    require_admin(ctx)
    if args[0] == "report" and len(args) == 1:
        print_report("swarm registry", {"server": props.registry_server(ctx) or ""}, fmt)
        return
    if args[0] != "set" or len(args) > 2:
        raise UsageError("usage: swarm:registry set [URL] | swarm:registry report")
    value = props.check_registry(args[1].removeprefix("https://") if len(args) == 2 else "")
    props.store(ctx, props.REGISTRY, GLOBAL, "server", value)
    click.echo(f"-----> swarm registry {value or 'unset'}")


@group("scheduler-swarm", "Swarm placement of an app's process types.", default_verb="report")
def scheduler_swarm() -> None:
    pass


@scheduler_swarm.command("set")
@click.argument("app")
@click.argument("key", metavar="constraints")
@click.argument("process")
@click.argument("values", nargs=-1, metavar="[CONSTRAINT ...]")
@click.pass_obj
def scheduler_swarm_set(ctx: Context, app: str, key: str, process: str, values: tuple[str, ...]) -> None:
    """Set the placement constraints of one process type (from the next deploy or `ps:restart`).

    `scheduler-swarm:set APP constraints web node.role==worker node.labels.zone!=b`: swarm's
    constraint syntax; every one must hold. No CONSTRAINT unsets. Tasks spread over the eligible nodes.
    """
    from schedulers.swarm import settings as props  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    app = authorized_app(ctx, app)
    if key != "constraints":
        raise UsageError("usage: scheduler-swarm:set APP constraints PROCESS [CONSTRAINT ...]")
    props.set_constraints(ctx, app, process, list(values))
    click.echo(f"-----> {app} {process}: constraints {' '.join(values) or 'unset'} (from the next deploy)")
    ctx.bus.call("post_settings_change", ctx=ctx, app=app,
                 summary=f"scheduler-swarm:set constraints {process} {' '.join(values)}".rstrip())


@scheduler_swarm.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def scheduler_swarm_report(ctx: Context, app: str, fmt: str) -> None:
    """Show the placement constraints of each process type."""
    from schedulers.swarm import settings as props  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    app = authorized_app(ctx, app)
    table = ctx.state.get_json(props.SCHEDULER, app, "constraints", {})
    print_report(f"{app} swarm placement", {p: " ".join(c) for p, c in sorted(table.items())}, fmt)


COMMANDS = (swarm_nodes, swarm_join_token, swarm_drain, swarm_activate, swarm_registry)
