"""The command group of a kind of service (`postgres:*`, `redis:*`): Dokku's service-plugin verbs.

`group(kind)` makes it; a third-party datastore plugin calls it from its own `register_commands`.
Role rules: admins create, destroy, restart, expose and see credentials; a deployer may link its apps, and
info/logs/connect/export/import the services linked to them (info without the password).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, cast

import click

from pushdock.apps import authorized_app, require_admin
from pushdock.commands import echo_progress, format_option, print_report, print_table
from pushdock.context import Context
from pushdock.datastore import Backupable, Datastore
from pushdock.errors import Conflict, UsageError
from services import engine, exposure, links, model


def group(kind: str, *, backups: bool = False) -> click.Group:
    """The `KIND:*` commands; `backups` (the kind is a `pushdock.datastore.Backupable`): also backup, backups, restore
    and backup-schedule (services/backups.py)."""
    from pushdock.commands import group as make_group  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    @make_group(kind, f"{kind} services: create one, link it to apps (sets its URL variable).", default_verb="list")
    def cli() -> None:
        pass

    def ds(ctx: Context) -> Datastore:
        store: Datastore = ctx.bus.lookup("services", kind)
        return store

    @cli.command("create")
    @click.argument("name")
    @click.pass_obj
    def create(ctx: Context, name: str) -> None:
        """Create a service (admin only): builds its image the first time."""
        require_admin(ctx)
        model.check_name(kind, name)
        store = ds(ctx)
        started = time.monotonic()
        with ctx.state.global_lock(model.plugin(kind)):
            service, password = model.create(ctx.state, kind, name)
            try:
                engine.ensure_image(store, echo_progress())
                click.echo(f"-----> Starting {kind} service {name}")
                engine.start(ctx, store, service, password)
            except BaseException:
                engine.remove(ctx, service)
                model.forget(ctx.state, service)
                raise
        ctx.bus.call("post_service_create", ctx=ctx, service=kind, name=name)
        click.echo(f"=====> {store.title} service {name} created in {time.monotonic() - started:.1f}s")
        click.echo(f"       link it to an app with: {kind}:link {name} APP")

    @cli.command("rebuild-image")
    @click.pass_obj
    def rebuild_image(ctx: Context) -> None:
        """Rebuild the service image from Debian's packages (admin only); restart services to use it."""
        require_admin(ctx)
        engine.ensure_image(ds(ctx), echo_progress(), force=True)

    @cli.command("link")
    @click.option("--alias", default=None, help="The variable is ALIAS_URL (default: the kind's, e.g. DATABASE).")
    @click.option("--no-restart", is_flag=True, help="Store only; apply at the next deploy or restart.")
    @click.argument("name")
    @click.argument("app")
    @click.pass_obj
    def link(ctx: Context, name: str, app: str, alias: str | None, no_restart: bool) -> None:
        """Link the service to an app: sets its URL variable as a new release (zero downtime)."""
        model.check_name(kind, name)
        if alias is not None:
            model.check_alias(alias)
        authorized_app(ctx, app)
        var = links.link(ctx, ds(ctx), name, app, alias=alias, no_restart=no_restart)
        click.echo(f"=====> {kind} service {name} linked to {app} as {var}")

    @cli.command("unlink")
    @click.option("--no-restart", is_flag=True, help="Store only; apply at the next deploy or restart.")
    @click.argument("name")
    @click.argument("app")
    @click.pass_obj
    def unlink(ctx: Context, name: str, app: str, no_restart: bool) -> None:
        """Unlink the service from an app: unsets its URL variable as a new release."""
        model.check_name(kind, name)
        authorized_app(ctx, app)
        var = links.unlink(ctx, ds(ctx), name, app, no_restart=no_restart)
        click.echo(f"=====> {kind} service {name} unlinked from {app} ({var} unset)")

    @cli.command("info")
    @click.argument("name")
    @format_option
    @click.pass_obj
    def info(ctx: Context, name: str, fmt: str) -> None:
        """Show a service (the credentials to admins only)."""
        service = model.visible(ctx, kind, model.check_name(kind, name))
        store = ds(ctx)
        c = engine.container(ctx, service)
        linked = [f"{link_.app} ({link_.var})" for link_ in service.links]
        fields = {
            "kind": kind, "name": name, "version": store.title, "image": store.image,
            "status": c.status if c is not None else "missing", "created": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(service.created)),
            "internal host": engine.host(service), "port": store.port,
            "container": engine.resource_name(ctx, service), "network": engine.resource_name(ctx, service),
            "volume": engine.resource_name(ctx, service), "data path": store.data_path,
            "links": linked if fmt == "json" else ", ".join(linked) or "none",
            "exposed": exposure.shown(service.exposed) if service.exposed else "no",
        }
        if ctx.identity.role == "admin":
            fields["dsn"] = store.url(name, model.password(ctx.state, service), engine.host(service))
        print_report(f"{kind} service {name}", fields, fmt)

    @cli.command("list")
    @format_option
    @click.pass_obj
    def list_(ctx: Context, fmt: str) -> None:
        """List services (a deployer sees those linked to its apps)."""
        rows = []
        for service in model.all_of(ctx.state, kind):
            if not model.may_see(ctx, service):
                continue
            c = engine.container(ctx, service)
            rows.append({"name": service.name, "status": c.status if c is not None else "missing",
                         "links": [link_.app for link_ in service.links]})
        if fmt == "text":
            rows = [r | {"links": ",".join(r["links"]) or "-"} for r in rows]
        print_table(rows, ["name", "status", "links"], fmt)

    @cli.command("connect")
    @click.argument("name")
    @click.pass_obj
    def connect(ctx: Context, name: str) -> int:
        """An interactive client in the service (`ssh -t` for a terminal)."""
        service = model.visible(ctx, kind, model.check_name(kind, name))
        return engine.attach_exec(ctx, service, ds(ctx).connect_argv(name), tty=sys.stdin.isatty())

    @cli.command("export")
    @click.argument("name")
    @click.pass_obj
    def export(ctx: Context, name: str) -> int:
        """A dump of the service's data on stdout."""
        service = model.visible(ctx, kind, model.check_name(kind, name))
        if sys.stdout.isatty():
            raise UsageError(f"{kind}:export writes a binary dump: redirect it to a file")
        return engine.attach_exec(ctx, service, ds(ctx).export_argv(name), tty=False)

    @cli.command("import")
    @click.argument("name")
    @click.pass_obj
    def import_(ctx: Context, name: str) -> int:
        """Load a dump (as export writes it) from stdin into the service."""
        service = model.visible(ctx, kind, model.check_name(kind, name))
        store = ds(ctx)
        argv = store.import_argv(name)
        if not argv and not getattr(store, "restore_offline", False):
            raise UsageError(f"{kind}:import is not supported")
        if sys.stdin.isatty():
            raise UsageError(f"{kind}:import reads a dump on stdin: {kind}:import {name} < FILE")
        if argv:
            return engine.attach_exec(ctx, service, argv, tty=False)
        from services import backups as backups_  # noqa: PLC0415 -- start-up: command modules load with the CLI (a kind that loads a snapshot with the server stopped)

        with backups_.spooled(ctx, service, sys.stdin.buffer) as path:
            backups_.load(ctx, cast(Backupable, store), service, path)  # restore_offline is set: it has backups
        return 0

    @cli.command("logs")
    @click.option("-n", "--num", "num", default=100, show_default=True, type=click.IntRange(1, 10000))
    @click.argument("name")
    @click.pass_obj
    def logs(ctx: Context, name: str, num: int) -> None:
        """The service's last log lines."""
        service = model.visible(ctx, kind, model.check_name(kind, name))
        click.echo(engine.logs(ctx, service, num).decode(errors="replace"), nl=False)

    @cli.command("restart")
    @click.argument("name")
    @click.pass_obj
    def restart(ctx: Context, name: str) -> None:
        """Restart the service (admin only); its data stays."""
        require_admin(ctx)
        service = model.get(ctx.state, kind, model.check_name(kind, name))
        engine.restart(ctx, ds(ctx), service, model.password(ctx.state, service))
        click.echo(f"=====> {kind} service {name} restarted")

    @cli.command("expose")
    @click.argument("name")
    @click.argument("host_port", metavar="[[ADDRESS:]HOST_PORT]", required=False)
    @click.pass_obj
    def expose(ctx: Context, name: str, host_port: str | None) -> None:
        """Publish the service on a host port (admin only): 127.0.0.1 and a free port unless given."""
        require_admin(ctx)
        model.check_name(kind, name)
        address, port = model.parse_expose(kind, host_port)
        where = exposure.expose(ctx, ds(ctx), name, address, port)
        click.echo(f"=====> {kind} service {name} exposed on {where}")

    @cli.command("unexpose")
    @click.argument("name")
    @click.pass_obj
    def unexpose(ctx: Context, name: str) -> None:
        """Publish the service on no host port again (admin only)."""
        require_admin(ctx)
        model.check_name(kind, name)
        exposure.unexpose(ctx, ds(ctx), name)
        click.echo(f"=====> {kind} service {name} is no longer exposed")

    @cli.command("destroy")
    @click.option("--force", is_flag=True, help="Required: the data goes with it.")
    @click.argument("name")
    @click.pass_obj
    def destroy(ctx: Context, name: str, force: bool) -> None:
        """Destroy a service and its data (admin only; refused while linked)."""
        require_admin(ctx)
        model.check_name(kind, name)
        if not force:
            raise UsageError(f"{kind}:destroy deletes the service's data: add --force")
        with ctx.state.global_lock(model.plugin(kind)):
            service = model.get(ctx.state, kind, name)
            if service.links:
                apps = ", ".join(link_.app for link_ in service.links)
                raise Conflict(f"{kind} service {name} is linked to {apps}: {kind}:unlink it first")
            ctx.bus.call("pre_service_destroy", ctx=ctx, service=kind, name=name)
            engine.remove(ctx, service)
            model.forget(ctx.state, service)
        click.echo(f"=====> {kind} service {name} destroyed")

    if backups:
        add_backup_commands(cli, kind, ds)
    return cli


def add_backup_commands(cli: click.Group, kind: str, ds: Any) -> None:
    from services import backups as backups_  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    @cli.command("backup")
    @click.option("--verify", is_flag=True, help="Restore it into a throwaway container and compare row counts.")
    @click.argument("name")
    @click.pass_obj
    def backup(ctx: Context, name: str, verify: bool) -> None:
        """Write a compressed dump under DATA_DIR/backups/ (prints its path and size)."""
        service = model.visible(ctx, kind, model.check_name(kind, name))
        made = backups_.backup(ctx, ds(ctx), service, verify=verify)
        click.echo(f"=====> {made.path} ({made.size} bytes)" + (", verified" if made.verified == "yes" else ""))

    @cli.command("backups")
    @click.argument("name")
    @format_option
    @click.pass_obj
    def backups(ctx: Context, name: str, fmt: str) -> None:
        """List the service's backups: file, size, time, verified."""
        service = model.visible(ctx, kind, model.check_name(kind, name))
        rows = [{"file": b.file, "size": b.size, "verified": b.verified, "path": str(b.path),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(b.time))}
                for b in backups_.listed(ctx, service)]
        print_table(rows, ["file", "size", "time", "verified"], fmt)

    @cli.command("backup-schedule")
    @click.option("--keep", default=backups_.DEFAULT_KEEP, show_default=True, type=click.IntRange(1, backups_.MAX_KEEP),
                  help="How many backups to keep (the newest).")
    @click.argument("name")
    @click.argument("cron")
    @click.pass_obj
    def backup_schedule(ctx: Context, name: str, cron: str, keep: int) -> None:
        """Back up (verified) on a cron schedule from serve's timer, keeping the newest N (admin only)."""
        require_admin(ctx)
        service = model.get(ctx.state, kind, model.check_name(kind, name))
        expression = backups_.set_schedule(ctx, service, cron, keep)
        click.echo(f"=====> {kind} service {name} is backed up and verified at '{expression}', keeping {keep}")

    @cli.command("backup-unschedule")
    @click.argument("name")
    @click.pass_obj
    def backup_unschedule(ctx: Context, name: str) -> None:
        """Stop the scheduled backups (the files stay; admin only)."""
        require_admin(ctx)
        backups_.clear_schedule(ctx, model.get(ctx.state, kind, model.check_name(kind, name)))
        click.echo(f"=====> {kind} service {name} has no backup schedule")

    @cli.command("restore")
    @click.argument("name")
    @click.argument("file")
    @click.pass_obj
    def restore(ctx: Context, name: str, file: str) -> None:
        """Restore one of the service's backups into it (admin only; FILE as backups lists it)."""
        require_admin(ctx)
        service = model.get(ctx.state, kind, model.check_name(kind, name))
        made = backups_.restore(ctx, ds(ctx), service, file)
        click.echo(f"=====> {kind} service {name} restored from {made.file}")


def dumps(value: object) -> str:
    return json.dumps(value, indent=1)
