"""checks:enable|disable|skip|set|report — how deploys check new instances and swap them in.

The settings and what they mean are in pushdock/checks.py; they apply from the next deploy, restart or scale.
"""

from __future__ import annotations

from typing import Any

import click

from pushdock.apps import authorized_app
from pushdock.checks import check_settings, healthchecks_of, parse_setting
from pushdock.commands import format_option, group, print_report
from pushdock.context import Context


@group("checks", "Zero-downtime checks of an app's deploys.", default_verb="report")
def checks() -> None:
    pass


def _changed(ctx: Context, app: str, summary: str, message: str) -> None:
    click.echo(f"-----> {message}")
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=summary)


@checks.command("enable")
@click.argument("app")
@click.pass_obj
def enable(ctx: Context, app: str) -> None:
    """Start new containers beside the old ones and check them before they take traffic (the default)."""
    authorized_app(ctx, app)
    ctx.state.delete("checks", app, "disabled")
    ctx.state.delete("checks", app, "skipped")
    _changed(ctx, app, "checks:enable", f"Zero-downtime checks enabled for {app}")


@checks.command("disable")
@click.argument("app")
@click.pass_obj
def disable(ctx: Context, app: str) -> None:
    """Stop old containers before new ones start (downtime at every deploy).

    For apps that cannot run twice at once. Checks still run; a failed deploy starts the old containers again.
    """
    authorized_app(ctx, app)
    ctx.state.set("checks", app, "disabled", "1")
    _changed(ctx, app, "checks:disable",
             f"Zero-downtime disabled for {app}: deploys stop the old containers first (downtime)")


@checks.command("skip")
@click.argument("app")
@click.pass_obj
def skip(ctx: Context, app: str) -> None:
    """Route to new containers as soon as they run: no readiness or app.json checks."""
    authorized_app(ctx, app)
    ctx.state.set("checks", app, "skipped", "1")
    _changed(ctx, app, "checks:skip", f"Checks skipped for {app}: new containers take traffic once running")


@checks.command("set")
@click.argument("app")
@click.argument("key")
@click.argument("value", required=False)
@click.pass_obj
def set_(ctx: Context, app: str, key: str, value: str | None) -> None:
    """Set `wait-to-retire`, `stop-timeout`, `wait` (seconds) or `type` (http, uptime); no VALUE: the default.

    `type uptime` is Dokku's default check: new instances must still run `wait` seconds (10) after start,
    for apps that serve no HTTP on $PORT. `http` (the default): a web instance must answer HTTP on $PORT.
    """
    authorized_app(ctx, app)
    if value is None or value == "":
        parse_setting(key, "http" if key == "type" else "1")  # the key must still be known
        ctx.state.delete("checks", app, key)
    else:
        ctx.state.set("checks", app, key, parse_setting(key, value))
    s = check_settings(ctx, app)
    shown = {"wait-to-retire": f"{s.wait_to_retire:g}s", "stop-timeout": f"{s.stop_timeout}s",
             "wait": f"{s.wait}s", "type": s.type}[key]
    _changed(ctx, app, f"checks:set {key}", f"{app} {key}: {shown}")


@checks.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's check settings and the healthchecks of its current release."""
    authorized_app(ctx, app)
    s = check_settings(ctx, app)
    current = ctx.state.current_release(app)
    found = current.checks if current else {}
    startup = {p: healthchecks_of(found, p) for p in sorted(found)}
    mode = "disabled (old containers stop first)" if s.disabled else "enabled"
    fields: dict[str, Any] = {
        "zero downtime": mode,
        "checks": "skipped" if s.skipped else "run",
        "type": s.type if s.uptime is None else f"uptime (every instance still running after {s.wait}s)",
        "wait-to-retire": f"{s.wait_to_retire:g}s",
        "stop-timeout": f"{s.stop_timeout}s",
        "healthchecks": "; ".join(h.describe() for hs in startup.values() for h in hs)
                        or ("none" if s.uptime is not None else
                            "default (web answers HTTP below 500; others keep running)"),
    }
    if fmt == "json":
        fields = {"disabled": s.disabled, "skipped": s.skipped, "wait_to_retire": s.wait_to_retire,
                  "stop_timeout": s.stop_timeout, "type": s.type, "wait": s.wait, "healthchecks": found}
    print_report(f"{app} checks", fields, fmt)


def register(cli: click.Group) -> None:
    cli.add_command(checks)
