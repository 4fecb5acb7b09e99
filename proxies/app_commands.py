"""domains:*, ports:* and certs:* commands. Thin: parse, call the services, print.

Every change is validated completely first, then written and re-routed under the app's lock; if the
proxy refuses the result, the old setting is put back (nothing half-applied).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from proxies import certs, domains, ports
from proxies.routes import change, install_cert
from pushdock.apps import authorized_app
from pushdock.commands import format_option, group, print_report, print_table
from pushdock.context import Context
from pushdock.errors import Forbidden, NotFound, PushdockError, UsageError
from pushdock.state import GLOBAL


# -- domains ---------------------------------------------------------------------------------------
@group("domains", "Manage the hostnames an app is served at.", default_verb="report")
def domains_group() -> None:
    pass


def _domains_change(ctx: Context, verb: str, is_global: bool, args: tuple[str, ...]) -> None:
    if is_global:
        if ctx.identity.role != "admin":
            raise Forbidden(f"{ctx.identity.name} ({ctx.identity.role}) may not change global domains: admin only")
        _global_change(ctx, verb, domains.validate_domains(args, wildcard=False))
        return
    if not args:
        raise UsageError(f"usage: domains:{verb} APP{'' if verb == 'clear' else ' DOMAIN...'}")
    app, names = authorized_app(ctx, args[0]), domains.validate_domains(args[1:])
    if verb != "clear" and not names:
        raise UsageError(f"usage: domains:{verb} APP DOMAIN...")
    props = [("domains", app, "list"), ("domains", app, "default-disabled")]
    with ctx.state.global_lock("domains"):  # two apps cannot claim one name at the same time
        after = domains.plan(ctx, app, verb, names)
        change(ctx, app, lambda: domains.write(ctx, app, after), f"domains:{verb} {' '.join(names)}".strip(),
               props=props)
    click.echo(f"-----> Domains of {app}: {' '.join(ctx.domains(app))}")


def _global_change(ctx: Context, verb: str, names: list[str]) -> None:
    from proxies.switch import rebuild_all  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    if verb != "clear" and not names:
        raise UsageError(f"usage: domains:{verb} --global DOMAIN...")
    with ctx.state.global_lock("domains"):
        before = ctx.state.get("domains", GLOBAL, "list")
        after = domains.plan_global(ctx, verb, names)
        ctx.state.set_json("domains", GLOBAL, "list", after)
        try:
            failures = rebuild_all(ctx)
        except PushdockError as e:
            failures = [str(e)]
        if failures:
            if before is None:
                ctx.state.delete("domains", GLOBAL, "list")
            else:
                ctx.state.set("domains", GLOBAL, "list", before)
            rebuild_all(ctx)
            raise PushdockError(f"global domains unchanged: {len(failures)} app(s) failed: {failures[0]}")
    click.echo(f"-----> Global domains: {' '.join(after) or '(none)'}")


def _domains_verb(verb: str, help: str) -> None:
    # `-x.com` is an argument to reject as a domain, not an unknown option
    @domains_group.command(verb, help=help, context_settings={"ignore_unknown_options": True})
    @click.option("--global", "is_global", is_flag=True, help="The global domains (admin only).")
    @click.argument("args", nargs=-1, metavar="APP|--global DOMAIN..." if verb != "clear" else "APP|--global")
    @click.pass_obj
    def cmd(ctx: Context, is_global: bool, args: tuple[str, ...]) -> None:
        _domains_change(ctx, verb, is_global, args)


_domains_verb("add", "Serve the app (or every app: --global SUFFIX) at more domains.")
_domains_verb("remove", "Stop serving the app at these domains (APP.DOMAIN included).")
_domains_verb("set", "Serve the app at exactly these domains (or set the global ones).")
_domains_verb("clear", "Drop the app's own domains: back to APP.DOMAIN (or no global domain).")


@domains_group.command("report")
@click.option("--global", "is_global", is_flag=True, help="The global domains.")
@click.argument("app", required=False)
@format_option
@click.pass_obj
def domains_report(ctx: Context, app: str | None, is_global: bool, fmt: str) -> None:
    """Show the app's domains: defaults, its own, and the global ones."""
    if is_global or app is None:
        print_report("global domains", {"domain": ctx.settings.domain,
                                        "global domains": " ".join(domains.global_domains(ctx))}, fmt)
        return
    print_report(f"{authorized_app(ctx, app)} domains", domains.report(ctx, app), fmt)


# -- ports -----------------------------------------------------------------------------------------
@group("ports", "Manage the ports the proxy serves an app on (scheme:host:container).", default_verb="report")
def ports_group() -> None:
    pass


def _ports_change(ctx: Context, verb: str, app: str, raws: tuple[str, ...]) -> None:
    authorized_app(ctx, app)
    if verb != "clear" and not raws:
        raise UsageError(f"usage: ports:{verb} APP scheme:host:container...")
    prop = ("ports", app, "map")

    def write() -> None:
        if after is None:
            ctx.state.delete(*prop)
        else:
            ctx.state.set_json(*prop, [str(m) for m in after])

    after = ports.plan(ctx, app, verb, list(raws))
    change(ctx, app, write, f"ports:{verb} {' '.join(raws)}".strip(), props=[prop])
    active = ports.effective(ctx, app, tls=certs.exists(ctx, app))
    click.echo(f"-----> Ports of {app}: {' '.join(map(str, active)) or '(none active)'}")
    if after is not None and any(m.scheme == "https" for m in after) and not certs.exists(ctx, app):
        click.echo("       https mappings stay inactive until the app has a certificate (certs:add, certs:generate)")


def _ports_verb(verb: str, help: str, metavar: str) -> None:
    @ports_group.command(verb, help=help)
    @click.argument("app")
    @click.argument("mappings", nargs=-1, metavar=metavar)
    @click.pass_obj
    def cmd(ctx: Context, app: str, mappings: tuple[str, ...]) -> None:
        _ports_change(ctx, verb, app, mappings)


_ports_verb("set", "Serve the app on exactly these mappings, e.g. http:80:5000 https:443:5000.", "MAPPING...")
_ports_verb("add", "Add mappings (a mapping on the same host port is replaced).", "MAPPING...")
_ports_verb("remove", "Remove mappings, given as scheme:host:container or as a host port.", "MAPPING|PORT...")
_ports_verb("clear", "Forget the app's own mappings: back to the defaults.", "")


@ports_group.command("list")
@click.argument("app")
@format_option
@click.pass_obj
def ports_list(ctx: Context, app: str, fmt: str) -> None:
    """List the app's port mappings and whether each is active."""
    authorized_app(ctx, app)
    tls = certs.exists(ctx, app)
    maps = ports.explicit(ctx, app)
    shown = maps if maps is not None else ports.defaults(ctx, app, tls=tls)
    active = set(ports.effective(ctx, app, tls=tls))
    rows = [{"scheme": m.scheme, "host": m.host, "container": m.container, "active": m in active} for m in shown]
    print_table(rows, ["scheme", "host", "container", "active"], fmt)


@ports_group.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def ports_report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's mappings, where they come from, and which are active."""
    print_report(f"{authorized_app(ctx, app)} ports", ports.report(ctx, app), fmt)


# -- certs -----------------------------------------------------------------------------------------
@group("certs", "Manage an app's TLS certificate (HTTPS on PUSHDOCK_PROXY_TLS_PORT).", default_verb="report")
def certs_group() -> None:
    pass


def _install(ctx: Context, app: str, crt: bytes, key: bytes, summary: str) -> None:
    meta = install_cert(ctx, app, crt, key, summary)
    click.echo(f"-----> Certificate of {app} installed: {' '.join(meta.names) or meta.subject}")
    uncovered = [d for d in ctx.domains(app) if not certs.covers(meta.names, d)]
    if uncovered:
        click.echo(f"       not valid for: {' '.join(uncovered)}")


@certs_group.command("add")
@click.argument("app")
@click.argument("crt", required=False, type=click.Path(exists=True, dir_okay=False))
@click.argument("key", required=False, type=click.Path(exists=True, dir_okay=False))
@click.pass_obj
def certs_add(ctx: Context, app: str, crt: str | None, key: str | None) -> None:
    """Install a certificate (PEM, chain after the leaf) and its key, or a tar of both read from stdin."""
    authorized_app(ctx, app)
    if (crt is None) != (key is None):
        raise UsageError("usage: certs:add APP CRT KEY  (or a tar of server.crt and server.key on stdin)")
    if crt is not None and key is not None:
        with open(crt, "rb") as c, open(key, "rb") as k:
            pair = c.read(certs.MAX_PEM + 1), k.read(certs.MAX_PEM + 1)
    else:
        pair = certs.read_tar(sys.stdin.buffer.read(certs.MAX_TAR + 1))
    _install(ctx, app, *pair, "certs:add")


@certs_group.command("generate")
@click.argument("app")
@click.argument("names", nargs=-1, metavar="[DOMAIN...]")
@click.pass_obj
def certs_generate(ctx: Context, app: str, names: tuple[str, ...]) -> None:
    """Install a self-signed certificate for the app's domains (or the given ones), valid one year."""
    from proxies.domains import validate_domains  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    crt, key = certs.generate(validate_domains(names) if names else ctx.domains(app))
    _install(ctx, app, crt, key, "certs:generate")


@certs_group.command("remove")
@click.argument("app")
@click.pass_obj
def certs_remove(ctx: Context, app: str) -> None:
    """Remove the app's certificate: HTTPS stops, HTTP serves again (no redirect)."""
    authorized_app(ctx, app)
    if not certs.exists(ctx, app):
        raise NotFound(f"app {app} has no certificate")
    saved = certs.snapshot(ctx, app)

    def write() -> Callable[[], None]:
        certs.remove(ctx, app)
        return lambda: certs.restore(ctx, app, saved)

    change(ctx, app, write, "certs:remove")
    click.echo(f"-----> Certificate of {app} removed")


@certs_group.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def certs_report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's certificate: names, issuer, validity, fingerprint, domains it does not cover."""
    print_report(f"{authorized_app(ctx, app)} ssl", certs.report(ctx, app, ctx.domains(app)), fmt)
