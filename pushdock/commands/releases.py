"""releases APP, releases:info APP vN, releases:rollback APP [vN], releases:set [--global|APP] keep N"""

from __future__ import annotations

import time
from typing import Any

import click

from pushdock import releases as service
from pushdock.apps import authorize, authorized_app
from pushdock.commands import echo_progress, format_option, group, print_report, print_table
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.state import GLOBAL, Release


@group("releases", "List, inspect and roll back an app's releases.", default_verb="list")
def releases() -> None:
    pass


def summary(r: Release) -> dict[str, Any]:
    """A release as users see it: never the env's values (they are secrets), only its keys."""
    return {
        "version": r.name, "status": r.status + (" (pruned)" if r.pruned else ""), "created": _when(r.created),
        "who": r.who, "description": r.why, "image": r.image, "sha": r.sha[:12],
        "formation": " ".join(f"{k}={v}" for k, v in r.formation.items()),
    }


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@releases.command("list")
@click.argument("app")
@format_option
@click.pass_obj
def list_(ctx: Context, app: str, fmt: str) -> None:
    """List the app's releases, newest first."""
    authorized_app(ctx, app)
    found = list(reversed(ctx.state.list_releases(app)))
    if fmt == "json":
        print_table([_json(r) for r in found], [], fmt)
        return
    click.echo(f"=====> {app} releases (keeping the last {service.keep_count(ctx.state, app)} images)")
    print_table([summary(r) for r in found], ["version", "status", "created", "who", "description"], fmt)


def _json(r: Release) -> dict[str, Any]:
    return {"version": r.number, "name": r.name, "status": r.status, "pruned": r.pruned, "created": r.created,
            "who": r.who, "why": r.why, "image": r.image, "sha": r.sha, "formation": r.formation,
            "processes": r.processes, "env_keys": sorted(r.env), "scripts": r.scripts,
            "healthchecks": r.checks, "cron": r.cron}


@releases.command("info")
@click.argument("app")
@click.argument("version")
@format_option
@click.pass_obj
def info(ctx: Context, app: str, version: str, fmt: str) -> None:
    """Show one release: image, commit, formation, processes, config keys."""
    authorized_app(ctx, app)
    r = ctx.state.get_release(app, service.parse_version(version))
    if fmt == "json":
        print_report("", _json(r), fmt)
        return
    fields = summary(r) | {
        "processes": "; ".join(f"{k}: {v or '(image CMD)'}" for k, v in r.processes.items()),
        "config keys": " ".join(sorted(r.env)) or "none",
        "scripts": "; ".join(f"{k}: {v}" for k, v in r.scripts.items()) or "none",
        "healthchecks": sum(len(v) for v in r.checks.values()) or "default",
        "cron": "; ".join(f"{c['schedule']}: {c['command']}" for c in r.cron) or "none",
    }
    print_report(f"{app} {r.name}", fields, fmt)


@releases.command("rollback")
@click.argument("app")
@click.argument("version", required=False)
@click.pass_obj
def rollback(ctx: Context, app: str, version: str | None) -> None:
    """Deploy the image, config and formation of vN (default: the previous release) as a new release."""
    authorized_app(ctx, app)
    number = service.parse_version(version) if version is not None else None
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        release = ctx.pipeline.rollback(ctx, app, number, echo_progress())
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"releases:rollback {release.why.split()[-1]}")


@releases.command("set")
@click.option("--global", "is_global", is_flag=True, help="Set the default of every app (admin only).")
@click.argument("args", nargs=-1)
@click.pass_obj
def set_(ctx: Context, is_global: bool, args: tuple[str, ...]) -> None:
    """Set a releases property: `keep N` (images kept for rollback, default 5); no N unsets it.

    `releases:set APP keep N` or `releases:set --global keep N`.
    """
    if is_global:
        authorize(ctx, GLOBAL, admin=True)
        scope, rest = GLOBAL, list(args)
    else:
        if not args:
            raise UsageError("usage: releases:set [--global|APP] keep [N]")
        scope, rest = authorized_app(ctx, args[0]), list(args[1:])
    if not rest or rest[0] != "keep" or len(rest) > 2:
        raise UsageError("usage: releases:set [--global|APP] keep [N]")
    if len(rest) == 1:
        ctx.state.delete("releases", scope, "keep")
    else:
        ctx.state.set("releases", scope, "keep", str(service.parse_keep(rest[1])))
    click.echo(f"-----> releases keep for {'every app' if is_global else scope}: {service.keep_count(ctx.state, scope)}"
               " (applies from the next deploy)")
    if not is_global:
        ctx.bus.call("post_settings_change", ctx=ctx, app=scope, summary=f"releases:set keep {' '.join(rest[1:])}")


def register(cli: click.Group) -> None:
    cli.add_command(releases)
