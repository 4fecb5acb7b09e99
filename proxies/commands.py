"""proxy:* commands (and the list of every command of the proxies plugin). Thin: parse, call, print."""

from __future__ import annotations

import click

from proxies import certs, switch
from proxies.app_commands import certs_group, domains_group, ports_group
from proxies.routes import change
from proxies.tuning_commands import app_report, nginx_group, set_key, split_args
from pushdock import proxy_tuning
from pushdock.apps import authorized_app, require_admin
from pushdock.commands import format_option, group, print_report
from pushdock.context import Context
from pushdock.errors import UsageError
from pushdock.state import GLOBAL

BOOLEANS = {"true": "true", "false": "false", "on": "true", "off": "false", "1": "true", "0": "false"}
PROXY_SET_USAGE = ("proxy:set --global nginx|caddy|traefik  or  proxy:set APP https-redirect on|off  or  "
                   "proxy:set APP|--global KEY [VALUE] (nginx:set keys)")


@group("proxy", "The proxy that serves apps: nginx, caddy or traefik.", default_verb="report")
def proxy() -> None:
    pass


@proxy.command("report")
@click.argument("app", required=False)
@format_option
@click.pass_obj
def report(ctx: Context, app: str | None, fmt: str) -> None:
    """Show the proxy (type, process, ports) or how it serves APP."""
    px = ctx.proxy()
    if app is None:
        require_admin(ctx)
        fields = {"selected": px.name, **{k: v for k, v in px.report(ctx).items() if k != "proxy"}}
        fields["apps"] = len(fields.get("apps", []))
        for key in ("listening",):
            fields[key] = " ".join(fields.get(key) or [])
        fields["parked"] = _parked(fields.get("parked") or {})
        common = proxy_tuning.stored(ctx.state, GLOBAL)
        fields["global tuning"] = " ".join(f"{k}={v}" for k, v in common.items()) or "-"
        print_report("proxy", fields, fmt)
        return
    app_report(ctx, app, fmt)


@proxy.command("build-config")
@click.option("--all", "all_apps", is_flag=True, help="Every app, in one reload (admin only).")
@click.argument("app", required=False)
@click.pass_obj
def build_config(ctx: Context, app: str | None, all_apps: bool) -> None:
    """Regenerate APP's proxy configuration (or every app's) from its settings and running processes."""
    from proxies.routes import reroute  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    if all_apps == (app is not None):
        raise UsageError("usage: proxy:build-config APP | --all")
    if all_apps:
        require_admin(ctx)
        failures = switch.rebuild_all(ctx)
        click.echo(f"-----> Rebuilt the {ctx.proxy().name} configuration of {len(ctx.state.list_apps())} app(s)")
        for f in failures:
            click.echo(f"       failed: {f}")
        if failures:
            raise UsageError(f"{len(failures)} app(s) could not be routed")
        return
    assert app is not None
    authorized_app(ctx, app)
    if ctx.state.current_release(app) is None:
        click.echo(f"-----> {app} is not deployed yet: nothing to route")
        return
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        reroute(ctx, app)
    click.echo(f"-----> Rebuilt the {ctx.proxy().name} configuration of {app}")


@proxy.command("set", context_settings={"ignore_unknown_options": True})
@click.option("--global", "is_global", is_flag=True, help="Choose the host's proxy (admin only).")
@click.argument("args", nargs=-1, required=True, metavar="[APP] KEY|TYPE [VALUE]")
@click.pass_obj
def set_(ctx: Context, is_global: bool, args: tuple[str, ...]) -> None:
    """Choose the proxy, or set an app's proxy keys.

    `--global nginx|caddy|traefik` chooses the proxy; `APP https-redirect on|off`; `APP|--global KEY [VALUE]`
    sets a tuning key of `nginx:set` (e.g. `APP client-max-body-size 10m`; no VALUE: the default; docs/proxies.md).

    Switching the proxy starts the new one with every app's routes beside the old one (both share
    the ports), then stops the old one: apps stay reachable. If the new proxy cannot serve, nothing changes.
    """
    key_at = 0 if is_global else 1
    if len(args) > key_at and args[key_at] in proxy_tuning.KEYS:
        click.echo(set_key(ctx, *split_args(is_global, args)))
        return
    if is_global:
        require_admin(ctx)
        rest = args[1:] if args[:1] == ("selected",) else args
        if len(rest) != 1:
            raise UsageError(f"usage: {PROXY_SET_USAGE}")
        old = switch.select(ctx, rest[0])
        click.echo(f"-----> Proxy: {rest[0]}" + (f" (was {old}; stopped)" if old != rest[0] else ""))
        return
    if len(args) in (2, 3) and args[1] != "https-redirect":
        raise UsageError(f"unknown key {args[1]!r} (usage: {PROXY_SET_USAGE}; keys: https-redirect, "
                         f"{', '.join(proxy_tuning.KEYS)})")
    if len(args) not in (2, 3) or args[1] != "https-redirect":
        raise UsageError(f"usage: {PROXY_SET_USAGE}")
    app = authorized_app(ctx, args[0])
    value = BOOLEANS.get(args[2].lower()) if len(args) == 3 else "false"
    if value is None:
        raise UsageError("https-redirect is on or off (true or false)")
    prop = ("proxy", app, "https-redirect")
    change(ctx, app, lambda: ctx.state.set(*prop, value), f"proxy:set https-redirect {value}", props=[prop])
    click.echo(f"-----> https-redirect of {app}: {value}"
               + ("" if certs.exists(ctx, app) or value == "false" else " (takes effect once it has a certificate)"))


@proxy.command("start")
@click.pass_obj
def start(ctx: Context) -> None:
    """Start the selected proxy if it does not run (serve does this too)."""
    require_admin(ctx)
    px = ctx.proxy()
    px.ensure_running(ctx)
    click.echo(f"-----> {px.name} " + ("running" if px.serving(ctx) else "configured (not running)"))
    for app, ports in sorted((px.report(ctx).get("parked") or {}).items()):
        for port in ports:
            click.echo(f"       port {port} of {app}: in use by another program, not served until it is free")


def _parked(parked: dict[str, list[int]]) -> str:
    """`APP:PORT ...`: the ports left out of the proxy's configuration because another program holds them."""
    return " ".join(f"{app}:{port}" for app in sorted(parked) for port in parked[app])


@proxy.command("stop")
@click.option("--all", "all_types", is_flag=True, help="Every proxy type this data dir runs.")
@click.pass_obj
def stop(ctx: Context, all_types: bool) -> None:
    """Stop the proxy process of this data dir; apps are unreachable until `proxy:start` or `serve`."""
    require_admin(ctx)
    proxies = ctx.bus.registry("proxies").values() if all_types else [ctx.proxy()]
    for px in proxies:
        px.stop(ctx)
    click.echo("-----> Stopped " + ", ".join(px.name for px in proxies))


def _commands() -> list[click.Group]:
    from proxies.letsencrypt.commands import letsencrypt  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    return [proxy, domains_group, ports_group, certs_group, nginx_group, letsencrypt]


COMMANDS = _commands()
