"""events [-n N] [--app APP] — the audit log."""

from __future__ import annotations

import time

import click

from pushdock.commands import format_option, print_table
from pushdock.context import Context


@click.command("events")
@click.option("-n", "num", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--app", "app", default=None, help="Only events of this app.")
@format_option
@click.pass_obj
def events(ctx: Context, num: int, app: str | None, fmt: str) -> None:
    """Show recent commands, pushes and deploys: who, door, app, result."""
    rows = ctx.state.read_events(num if app is None else 10_000)
    rows = [r for r in rows if (app is None or r.get("app") == app) and ctx.identity.may_use(r.get("app") or "")]
    rows = rows[-num:]
    for r in rows:
        r["when"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("time", 0)))
    print_table(rows, ["when", "who", "door", "app", "action", "result", "duration"], fmt)


def register(cli: click.Group) -> None:
    cli.add_command(events)
