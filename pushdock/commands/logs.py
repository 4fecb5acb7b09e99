"""logs APP [-t] [-n N] [-p PROCESS]"""

from __future__ import annotations

import click

from pushdock.apps import authorize
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.state import PROCESS_NAME


@click.command("logs")
@click.argument("app")
@click.option("-t", "--tail", "follow", is_flag=True, help="Follow: keep streaming new lines.")
@click.option("-n", "--num", "num", type=click.IntRange(0, 100_000), default=100, show_default=True,
              help="How many lines to show first.")
@click.option("-p", "--ps", "process", default=None, help="Only this process type (`cron`: the app's cron jobs).")
@click.pass_obj
def logs(ctx: Context, app: str, follow: bool, num: int, process: str | None) -> None:
    """Show (and with -t follow) the output of an app's containers; over SSH, -t ends when the client leaves."""
    authorize(ctx, app)
    ctx.state.require_app(app)
    if process is not None and not PROCESS_NAME.match(process):
        raise UsageError(f"invalid process type {process[:40]!r}")
    if process == "cron":  # cron jobs' containers are gone once they end: their output is kept by pushdock
        from pushdock import cron  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

        lines = cron.log_lines(ctx, app, follow=follow, tail=num)
    else:
        lines = ctx.scheduler(app).logs(ctx, app, follow=follow, tail=num, process=process)
    try:
        for line in lines:
            click.echo(f"{app} {line}")
    finally:
        close = getattr(lines, "close", None)
        if close:
            close()


def register(cli: click.Group) -> None:
    cli.add_command(logs)
