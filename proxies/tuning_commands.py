"""Proxy tuning commands: `proxy:set APP|--global KEY [VALUE]` for Dokku's `nginx:set` keys, and `nginx:set`
/ `nginx:report`, Dokku's names for the same (pushdock/proxy_tuning.py has the keys). Thin: check, write
through the normal re-route path (validate -> write -> reload; the old value back if the proxy refuses), print.
"""

from __future__ import annotations

import datetime
from typing import Any

import click

from proxies import certs
from proxies.routes import change
from pushdock import proxy_tuning
from pushdock.apps import authorized_app, require_admin
from pushdock.commands import format_option, group, print_report
from pushdock.context import Context
from pushdock.errors import Forbidden, PushdockError, UsageError
from pushdock.state import GLOBAL

USAGE = "nginx:set APP|--global KEY [VALUE]  (no VALUE: back to the default)"


def set_key(ctx: Context, app: str | None, key: str, value: str | None) -> str:
    """Set `key` of `app` (None: the global default) to `value` (None: unset); every check comes first.
    Returns what is shown to the user."""
    if key not in proxy_tuning.KEYS:
        proxy_tuning.parse(key, "")  # the one-line "unknown key" error
    canonical = None if value is None else proxy_tuning.parse(key, value)
    if app is None:
        require_admin(ctx)
    else:
        app = authorized_app(ctx, app)
    if proxy_tuning.KEYS[key].admin and ctx.identity.role != "admin":
        raise Forbidden(f"{ctx.identity.name} ({ctx.identity.role}) may not set {key}: it writes a file on the "
                        "host: admin only")
    if canonical is not None:
        proxy_tuning.check_paths({key: canonical}, ctx.state)
    owner = GLOBAL if app is None else app
    after = proxy_tuning.stored(ctx.state, owner)
    if canonical is None:
        after.pop(key, None)
    else:
        after[key] = canonical
    shown = canonical if canonical is not None else "(default)"
    if app is None:
        _set_global(ctx, after)
    else:
        change(ctx, app, lambda: proxy_tuning.store(ctx.state, app, after), f"proxy:set {key} {shown}",
               props=[(proxy_tuning.PLUGIN, app, proxy_tuning.PROPERTY)])
    unapplied = [] if canonical is None else proxy_tuning.not_applied(ctx.proxy().name, {key: canonical})
    note = f" (not applied on {ctx.proxy().name})" if unapplied else ""
    return f"-----> {key} of {app or 'every app (global)'}: {shown}{note}"


def _set_global(ctx: Context, after: dict[str, str]) -> None:
    """Store the global values and re-route every app in one reload; put them back if any app fails."""
    from proxies.switch import rebuild_all  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    with ctx.state.global_lock("proxy-tuning"):
        before = proxy_tuning.stored(ctx.state, GLOBAL)
        proxy_tuning.store(ctx.state, GLOBAL, after)
        try:
            failures = rebuild_all(ctx)
        except PushdockError as e:
            failures = [e.message]
        if failures:
            proxy_tuning.store(ctx.state, GLOBAL, before)
            rebuild_all(ctx)
            raise PushdockError(f"global proxy settings unchanged: {len(failures)} app(s) failed: {failures[0]}")


def report_fields(ctx: Context, app: str) -> dict[str, Any]:
    """Each key as the app gets it: its own value, the global one (`(global)`), or `default (...)`; and the
    keys the selected proxy does not apply."""
    own, common = proxy_tuning.stored(ctx.state, app), proxy_tuning.stored(ctx.state, GLOBAL)
    fields: dict[str, Any] = {}
    for key, spec in proxy_tuning.KEYS.items():
        if key in own:
            fields[key] = own[key]
        elif key in common:
            fields[key] = f"{common[key]} (global)"
        else:
            fields[key] = f"default: {spec.default}"
    name = ctx.proxy().name
    fields["not applied"] = " ".join(proxy_tuning.not_applied(name, {**common, **own})) or "-"
    return fields


def split_args(is_global: bool, args: tuple[str, ...]) -> tuple[str | None, str, str | None]:
    """(app or None, key, value or None) from `APP KEY [VALUE]` or `--global KEY [VALUE]`."""
    rest = args if is_global else args[1:]
    if not args or not 1 <= len(rest) <= 2:
        raise UsageError(f"usage: {USAGE}")
    return (None if is_global else args[0]), rest[0], (rest[1] if len(rest) == 2 else None)


@group("nginx", "Tune how the proxy serves an app (Dokku's nginx:* names; proxy:set is the same).",
       default_verb="report")
def nginx_group() -> None:
    pass


@nginx_group.command("set", context_settings={"ignore_unknown_options": True})
@click.option("--global", "is_global", is_flag=True, help="The default of every app (admin only).")
@click.argument("args", nargs=-1, required=True, metavar="APP|--global KEY [VALUE]")
@click.pass_obj
def nginx_set(ctx: Context, is_global: bool, args: tuple[str, ...]) -> None:
    """Set a proxy tuning key of APP or --global.

    No VALUE: back to the default. E.g. `nginx:set APP client-max-body-size 10m`. Keys:
    client-max-body-size, proxy-read-timeout, proxy-buffer-size, hsts, hsts-max-age, hsts-include-subdomains,
    hsts-preload, x-forwarded-for-value, x-forwarded-port-value, x-forwarded-proto-value, x-forwarded-ssl,
    access-log-format, access-log-path, error-log-path (docs/proxies.md).
    """
    click.echo(set_key(ctx, *split_args(is_global, args)))


@nginx_group.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def nginx_report(ctx: Context, app: str, fmt: str) -> None:
    """Show APP's proxy settings (as proxy:report)."""
    app_report(ctx, app, fmt)


def app_report(ctx: Context, app: str, fmt: str) -> None:
    """How the proxy serves APP: domains, listeners, upstreams, certificate, tuning keys."""
    px = ctx.proxy()
    authorized_app(ctx, app)
    route = px.routes(ctx).get(app)
    meta = certs.info(ctx, app)
    fields = {
        "proxy": px.name,
        "domains": " ".join(ctx.domains(app)),
        "routed domains": " ".join(route.domains) if route else "",
        "listeners": " ".join(map(str, route.listeners)) if route else "",
        "upstreams": " ".join(map(str, route.upstreams)) if route else "",
        "state": "not routed" if route is None else ("serving" if route.upstreams else "stopped (503)"),
        "https redirect": ctx.state.get("proxy", app, "https-redirect") or "false",
        "certificate expires": "" if meta is None else datetime.datetime.fromtimestamp(
            meta.not_after, datetime.UTC).strftime("%Y-%m-%d"),
        **px.describe(ctx, app),
        **report_fields(ctx, app),
    }
    print_report(f"{app} proxy", fields, fmt)
