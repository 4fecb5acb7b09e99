"""logs:set [--global|APP] vector-sink [URI], logs:report APP — shipping an app's logs (pushdock/logship.py)."""

from __future__ import annotations

import click

from pushdock import logship
from pushdock.apps import authorized_app, require_admin
from pushdock.commands import echo_progress, format_option, print_report
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.state import GLOBAL

KEYS = (logship.PROP,)


@click.command("logs:set", context_settings={"ignore_unknown_options": True})
@click.argument("target", metavar="APP|--global")
@click.argument("key")
@click.argument("value", required=False, default="")
@click.pass_obj
def set_(ctx: Context, target: str, key: str, value: str) -> None:
    """Ship logs to a syslog or GELF sink (admin only).

    For one app, or every app without its own (--global); no value unsets.
    `logs:set APP vector-sink syslog://HOST:PORT` (UDP; syslog+tcp://, syslog+tls://, gelf://, gelf+tcp://
    too) restarts the app with zero downtime so its new containers ship; `--global` applies to each app at
    its next deploy or restart. The engine sends the lines; `logs APP` keeps working.
    """
    require_admin(ctx)  # the engine on the host opens the connection: admins pick where it goes
    if key not in KEYS:
        raise UsageError(f"unknown logs property {key[:40]!r} (known: {', '.join(KEYS)})")
    sink = logship.parse(value) if value else None
    if target == GLOBAL:
        logship.store(ctx.state, GLOBAL, value)
        click.echo(f"-----> {'Set' if sink else 'Unset'} the global vector-sink" + (f" to {value}" if sink else ""))
        click.echo("       each app takes it at its next deploy or restart (an app's own vector-sink wins)")
        return
    app = authorized_app(ctx, target)

    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        old = logship.stored(ctx.state, app)
        logship.store(ctx.state, app, value)
        click.echo(f"-----> {'Set' if sink else 'Unset'} {app}'s vector-sink" + (f" to {value}" if sink else ""))
        try:
            restarted = ctx.pipeline.restart_running(ctx, app, echo_progress())
        except BaseException:
            logship.store(ctx.state, app, old)  # the old containers still serve, shipping as before
            raise
    if not restarted:
        click.echo("-----> Stored; applies when the app starts")
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"logs:set vector-sink {'set' if sink else 'unset'}")


@click.command("logs:report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show where the app's logs are shipped.

    Its own vector-sink, the global one, the one in use and the engine driver it maps to.
    """
    authorized_app(ctx, app)
    computed = logship.computed(ctx.state, app)
    try:
        shipping = f"{(s := logship.parse(computed)).driver} {s.address}" if computed else "none"
    except UsageError as e:
        shipping = f"none ({e.message})"
    print_report(f"{app} logs information", {
        "logs vector sink": logship.stored(ctx.state, app),
        "logs global vector sink": logship.stored(ctx.state, GLOBAL),
        "logs computed vector sink": computed,
        "logs shipped by": shipping,
    }, fmt)


def register(cli: click.Group) -> None:
    cli.add_command(set_)
    cli.add_command(report)
