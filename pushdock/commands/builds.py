"""builds:list|output|cancel APP — every deploy of a commit, its output, and stopping the one under way."""

from __future__ import annotations

import click

from pushdock import builds as service
from pushdock.apps import authorized_app
from pushdock.commands import format_option, group, print_table
from pushdock.context import Context
from pushdock.errors import NotFound


@group("builds", "Show and cancel an app's builds.", default_verb="list")
def builds() -> None:
    pass


@builds.command("list")
@click.argument("app")
@format_option
@click.pass_obj
def list_(ctx: Context, app: str, fmt: str) -> None:
    """List the app's builds, newest first: commit, builder, start, duration, result."""
    authorized_app(ctx, app)
    rows = [b.view() for b in reversed(service.list_builds(ctx.state, app))]
    if fmt == "text":
        rows = [{**r, "commit": r["commit"][:7], "took": "" if r["took"] is None else f"{r['took']:.0f}s"}
                for r in rows]
    print_table(rows, ["id", "commit", "builder", "started", "took", "result", "release"], fmt)


@builds.command("output")
@click.argument("app")
@click.argument("build_id", metavar="[ID]", required=False)
@click.pass_obj
def output(ctx: Context, app: str, build_id: str | None) -> None:
    """Print a build's output (default: the latest build), as the pusher saw it."""
    authorized_app(ctx, app)
    if build_id is None:
        every = service.list_builds(ctx.state, app)
        if not every:
            raise NotFound(f"{app} has no builds yet")
        build = every[-1]
    else:
        build = service.get_build(ctx.state, app, build_id)
    for line in service.output(ctx.state, build):
        click.echo(line)


@builds.command("cancel")
@click.argument("app")
@click.pass_obj
def cancel(ctx: Context, app: str) -> None:
    """Stop the app's running build: the push is rejected (`cancelled`) and the app lock is released."""
    authorized_app(ctx, app)
    build = service.cancel(ctx, app)
    click.echo(f"=====> Cancelled build {build.id} of {app} ({build.sha[:7]})")


@click.command("logs:failed")
@click.argument("app")
@click.pass_obj
def logs_failed(ctx: Context, app: str) -> None:
    """Print the output of the app's last failed deploy."""
    authorized_app(ctx, app)
    build = service.last_failed(ctx.state, app)
    click.echo(f"=====> {app} build {build.id} ({build.sha[:7]}, {build.view()['started']}): {build.reason}")
    for line in service.output(ctx.state, build):
        click.echo(line)


def register(cli: click.Group) -> None:
    cli.add_command(builds)
    cli.add_command(logs_failed)
