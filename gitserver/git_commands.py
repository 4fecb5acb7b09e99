"""Commands of git as the admin interface: `git:set|report` and `webhooks:set|report`."""

from __future__ import annotations

import json
import time

import click

from pushdock.apps import authorized_app
from pushdock.commands import format_option, group, print_report, print_table
from pushdock.context import Context
from pushdock.errors import UsageError


@group("git", "The app's repository: deploy branch and refs/meta/config.", default_verb="report")
def git() -> None:
    pass


@git.command("set")
@click.argument("app")
@click.argument("key", type=click.Choice(["deploy-branch"]))
@click.argument("value", default="")
@click.pass_obj
def set_(ctx: Context, app: str, key: str, value: str) -> None:
    """Set deploy-branch BRANCH (no BRANCH: back to the first branch pushed)."""
    from gitserver import configref  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    stored = configref.set_deploy_branch(ctx, app, value.strip() or None)
    click.echo(f"-----> Deploy branch of {app}: {stored or '(the first branch pushed)'}")
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"git:set {key} {stored or ''}".strip())


@git.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show the deploy branch, the branches and the last change of refs/meta/config."""
    from gitserver import configref  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    print_report(f"{app} git information", configref.report(ctx, app), fmt)


@group("webhooks", "Deploy on GitHub pushes: POST /webhooks/github/APP.", default_verb="report")
def webhooks() -> None:
    pass


@webhooks.command("set")
@click.argument("app")
@click.argument("key", type=click.Choice(["secret", "repo", "token", "api"]))
@click.argument("value")
@click.pass_obj
def webhooks_set(ctx: Context, app: str, key: str, value: str) -> None:
    """Set the secret, the repo (clone URL), a token (private repo, commit statuses) or the api base URL ('' unsets)."""
    from gitserver import webhook_store as service  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    service.set_setting(ctx, app, key, value)
    ctx.event("webhooks:set", app=app, setting=key)
    shown = value.strip() if key in ("repo", "api") else "(hidden)"
    click.echo(f"-----> {'Set' if value.strip() else 'Unset'} webhook {key} of {app}"
               + (f": {shown}" if value.strip() else ""))


@webhooks.command("report")
@click.argument("app")
@click.option("-n", "--num", default=20, show_default=True, help="How many recent deliveries to show.")
@format_option
@click.pass_obj
def webhooks_report(ctx: Context, app: str, num: int, fmt: str) -> None:
    """Show the webhook's settings (secrets as set/unset) and its recent deliveries."""
    from gitserver import webhook_store as service  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs
    from gitserver.webhook_deploy import deploy_branch  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    if num < 0:
        raise UsageError("-n must be 0 or more")
    fields = {
        "url": f"/webhooks/github/{app}",
        "repo": service.get_setting(ctx, app, "repo") or "",
        "secret": "set" if service.get_setting(ctx, app, "secret") else "not set",
        "token": "set" if service.get_setting(ctx, app, "token") else "not set",
        "api": service.get_setting(ctx, app, "api") or "(from repo)",
        "deploy branch": deploy_branch(ctx, app),
    }
    recent = service.deliveries(ctx, app)[-num:] if num else []
    rows = [{"time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.get("time", 0))),
             "delivery": d.get("delivery", ""), "event": d.get("event", ""),
             "ref": d.get("ref", "").removeprefix("refs/heads/"), "sha": d.get("sha", "")[:7],
             "status": d.get("status", ""), "outcome": d.get("outcome", "")} for d in recent]
    if fmt == "json":
        click.echo(json.dumps({**fields, "deliveries": recent}, indent=1))
        return
    print_report(f"{app} webhook", fields, fmt)
    print_table(rows, ["time", "delivery", "event", "ref", "sha", "status", "outcome"], fmt)
