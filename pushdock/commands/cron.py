"""cron:list APP, cron:run APP ID, cron:report APP, cron:set APP maintenance on|off"""

from __future__ import annotations

import time
from typing import Any

import click

from pushdock import cron as service
from pushdock.apps import authorized_app
from pushdock.commands import format_option, group, print_report, print_table
from pushdock.context import Context
from pushdock.errors import UsageError

ON = {"on": True, "true": True, "off": False, "false": False}


@group("cron", "Scheduled jobs from app.json `cron` (serve runs them).", default_verb="list")
def cron() -> None:
    pass


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@cron.command("list")
@click.argument("app")
@format_option
@click.pass_obj
def list_(ctx: Context, app: str, fmt: str) -> None:
    """List an app's cron jobs and their runs.

    Columns: id, schedule, last run, its exit status, next run, command.
    """
    authorized_app(ctx, app)
    rows = service.listing(ctx, app)
    if fmt == "json":
        print_table(rows, [], fmt)
        return
    shown = [{**r, "last_run": _when(r["last_run"]), "status": "-" if r["status"] is None else r["status"],
              "next_run": "paused" if r["maintenance"] else _when(r["next_run"])} for r in rows]
    print_table(shown, ["id", "schedule", "last_run", "status", "next_run", "command"], fmt)


@cron.command("run")
@click.argument("app")
@click.argument("job_id", metavar="ID")
@click.pass_obj
def run(ctx: Context, app: str, job_id: str) -> int:
    """Run a cron job now; exits with its status.

    The job runs in the foreground with its output shown (and kept in `logs APP -p cron`).
    """
    authorized_app(ctx, app)
    status = service.run(ctx, service.find(ctx, app, job_id), echo=click.echo, wait=True)
    return int(status or 0)


@cron.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show an app's cron settings and runs."""
    authorized_app(ctx, app)
    rows = service.listing(ctx, app)
    last = max((r["last_run"] for r in rows if r["last_run"]), default=None)
    upcoming = min((r["next_run"] for r in rows if r["next_run"]), default=None)
    fields: dict[str, Any] = {
        "app": app, "maintenance": "on" if service.paused(ctx, app) else "off", "jobs": len(rows),
        "scheduler": ctx.scheduler(app).name, "last run": last, "next run": upcoming,
        "failing": sorted(r["id"] for r in rows if r["status"] not in (None, 0, "running")),
    }
    if fmt == "json":
        print_report("", {k.replace(" ", "_"): v for k, v in fields.items()}, fmt)
        return
    shown = {**fields, "last run": _when(last), "next run": "paused" if fields["maintenance"] == "on" else
             _when(upcoming), "failing": " ".join(fields["failing"]) or "none"}
    print_report(f"{app} cron", shown, fmt)


@cron.command("set")
@click.argument("app")
@click.argument("key")
@click.argument("value")
@click.pass_obj
def set_(ctx: Context, app: str, key: str, value: str) -> None:
    """Pause or resume an app's cron jobs.

    `cron:set APP maintenance on` pauses every job of the app; `off` resumes them.
    """
    authorized_app(ctx, app)
    if key != "maintenance":
        raise UsageError(f"unknown cron property {key[:40]!r}: use `cron:set {app} maintenance on|off`")
    if value.lower() not in ON:
        raise UsageError(f"maintenance must be on or off, not {value[:40]!r}")
    service.set_maintenance(ctx, app, ON[value.lower()])


def register(cli: click.Group) -> None:
    cli.add_command(cron)
