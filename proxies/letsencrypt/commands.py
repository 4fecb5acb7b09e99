"""letsencrypt:* commands (Dokku-letsencrypt's names). Thin: parse, call the service, print."""

from __future__ import annotations

import click

from proxies import certs
from proxies.letsencrypt import service
from pushdock.apps import authorized_app, require_admin
from pushdock.commands import format_option, group, print_report, print_table
from pushdock.context import Context
from pushdock.errors import PushdockError, UsageError
from pushdock.state import GLOBAL

GLOBAL_KEYS = ("email", "server")
SET_USAGE = "letsencrypt:set --global email ADDR|server URL  (no value: back to the default)"


@group("letsencrypt", "Certificates from an ACME CA (Let's Encrypt), renewed by serve.", default_verb="list")
def letsencrypt() -> None:
    pass


@letsencrypt.command("set")
@click.option("--global", "is_global", is_flag=True, help="The account's settings (admin only).")
@click.argument("key")
@click.argument("value", required=False)
@click.pass_obj
def set_(ctx: Context, is_global: bool, key: str, value: str | None) -> None:
    """Set the ACME account's email or server.

    `server` is an ACME v2 directory URL (default: Let's Encrypt production); no VALUE: the default.
    """
    require_admin(ctx)
    if not is_global or key not in GLOBAL_KEYS:
        raise UsageError(f"usage: {SET_USAGE}")
    if value is None or value == "":
        ctx.state.delete(service.PLUGIN, GLOBAL, key)
        click.echo(f"-----> letsencrypt {key}: the default")
        return
    if key == "email" and (len(value) > 254 or value.count("@") != 1 or any(c.isspace() for c in value)):
        raise UsageError(f"invalid email address {value[:60]!r}")
    if key == "server" and (not value.startswith(("https://", "http://")) or len(value) > 500
                            or any(c.isspace() for c in value)):
        raise UsageError(f"the server is an ACME v2 directory URL (https://...), not {value[:60]!r}")
    ctx.state.set(service.PLUGIN, GLOBAL, key, value)
    click.echo(f"-----> letsencrypt {key}: {value}")


@letsencrypt.command("enable")
@click.argument("app")
@click.pass_obj
def enable(ctx: Context, app: str) -> None:
    """Get and serve a certificate (HTTP-01).

    One certificate for the app's domains, answered through the running proxy; serve renews it.
    """
    authorized_app(ctx, app)
    meta = service.enable(ctx, app)
    click.echo(f"-----> Certificate of {app} installed: {' '.join(meta.names)} (expires "
               f"{certs.day(meta.not_after)})")


@letsencrypt.command("disable")
@click.argument("app")
@click.pass_obj
def disable(ctx: Context, app: str) -> None:
    """Stop renewing and remove its certificate.

    Only a certificate letsencrypt issued is removed (HTTPS stops); one from certs:add stays.
    """
    authorized_app(ctx, app)
    removed = service.disable(ctx, app)
    click.echo(f"-----> letsencrypt disabled for {app}" + ("; its certificate removed" if removed else ""))


@letsencrypt.command("revoke")
@click.argument("app")
@click.pass_obj
def revoke(ctx: Context, app: str) -> None:
    """Revoke the app's certificate and remove it.

    Revoked at the CA, removed from the proxy; renewing stops.
    """
    authorized_app(ctx, app)
    service.revoke(ctx, app)
    click.echo(f"-----> Certificate of {app} revoked and removed; letsencrypt disabled")


@letsencrypt.command("auto-renew")
@click.argument("app", required=False)
@click.pass_obj
def auto_renew(ctx: Context, app: str | None) -> None:
    """Renew due certificates now.

    Every certificate within 30 days of expiry, of APP or of every app (admin only).
    """
    if app is None:
        require_admin(ctx)
    else:
        authorized_app(ctx, app)
    results = service.renew(ctx, None if app is None else [app])
    for name, result in sorted(results.items()):
        click.echo(f"-----> {name}: {result}")
    if not results:
        click.echo("-----> nothing to renew")
    failed = [f"{name}: {r}" for name, r in sorted(results.items()) if r != "renewed"]
    if failed:
        raise PushdockError(failed[0] if len(failed) == 1 else f"{len(failed)} renewals failed; {failed[0]}")


@letsencrypt.command("list")
@format_option
@click.pass_obj
def list_(ctx: Context, fmt: str) -> None:
    """List apps with letsencrypt: expiry, days left."""
    apps = [a for a in ctx.state.list_apps() if ctx.identity.may_use(a)]
    rows = [{"app": r.app, "domains": r.domains, "expiry": r.expiry, "days_left": r.days_left}
            for r in service.rows(ctx, apps)]
    print_table(rows, ["app", "domains", "expiry", "days_left"], fmt)


@letsencrypt.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show an app's letsencrypt state.

    Enabled, server, email, domains, expiry, days left, the last attempt and the failures since.
    """
    print_report(f"{authorized_app(ctx, app)} letsencrypt", service.report(ctx, app), fmt)
