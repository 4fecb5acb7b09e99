"""storage:ensure-directory|mount|unmount|list|report — persistent directories mounted into an app's containers.

The model is pushdock/storage.py. A mount change is a new release with zero downtime (`--no-restart`: stored,
applied by the next deploy or restart) and is recorded in refs/meta/config (`[storage] mounts`).
"""

from __future__ import annotations

import click

from pushdock import storage
from pushdock.apps import authorized_app, require_admin
from pushdock.commands import echo_progress, format_option, group, print_report
from pushdock.context import Context
from pushdock.storage import Mount


@group("storage", "Persistent storage: directories and the mounts of an app's containers.", default_verb="list")
def storage_group() -> None:
    pass


@storage_group.command("ensure-directory")
@click.argument("name")
@click.option("--chown", "chown", default="herokuish", show_default=True, metavar="herokuish|root|false|UID[:GID]",
              help="Owner of the directory: herokuish (uid 32767, as buildpack apps run), root, false (leave it), "
                   "or the UID[:GID] a Dockerfile app's USER has.")
@click.pass_obj
def ensure_directory(ctx: Context, name: str, chown: str) -> None:
    """Create a storage directory (admin only).

    DATA_DIR/storage/NAME, if missing, owned by --chown; apps mount it with storage:mount.
    """
    require_admin(ctx)
    storage.check_name(name)
    owner = storage.parse_chown(chown)
    path = storage.ensure_directory(ctx.state, name, owner)
    click.echo(f"-----> Ensured {path}" + ("" if owner is None else f", owned by {owner[0]}:{owner[1]}"))
    click.echo(f"       mount it with: storage:mount APP {name}:/CONTAINER/PATH")


def _change(ctx: Context, app: str, new: list[Mount], why: str, no_restart: bool) -> None:
    """Apply the app's new mounts: a new release (zero downtime), or stored for the next one."""
    if no_restart:
        storage.store(ctx.state, app, new)
        click.echo("-----> Stored; takes effect on the next deploy or restart")
        return
    if ctx.pipeline.new_release(ctx, app, why=why, mounts=storage.specs(new), progress=echo_progress()) is None:
        click.echo("-----> Stored; the app is not deployed yet")


@storage_group.command("mount")
@click.option("--no-restart", is_flag=True, help="Store only; apply at the next deploy or restart.")
@click.argument("app")
@click.argument("spec", metavar="SOURCE:CONTAINER_PATH[:ro]")
@click.pass_obj
def mount(ctx: Context, app: str, spec: str, no_restart: bool) -> None:
    """Mount storage into the app (a new release).

    SOURCE is a storage directory (storage:ensure-directory) or, for admins, an absolute host path; every
    container of the app gets it: processes, run, the release phase.
    """
    authorized_app(ctx, app)
    wanted = storage.parse_input(ctx.state, spec)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        old = storage.stored(ctx.state, app)
        new = storage.added(old, wanted)
        storage.check_change(ctx, app, old, new)
        click.echo(f"-----> Mounting {wanted.source} at {wanted.target} in {app}"
                   + (" (read-only)" if wanted.read_only else ""))
        _change(ctx, app, new, f"storage:mount {wanted.spec}", no_restart)
        storage.remember_users(ctx.state, app, new)
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"storage:mount {wanted.spec}")


@storage_group.command("unmount")
@click.option("--no-restart", is_flag=True, help="Store only; apply at the next deploy or restart.")
@click.argument("app")
@click.argument("spec", metavar="SOURCE:CONTAINER_PATH")
@click.pass_obj
def unmount(ctx: Context, app: str, spec: str, no_restart: bool) -> None:
    """Remove a mount (the files stay)."""
    authorized_app(ctx, app)
    gone = storage.parse_input(ctx.state, spec)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        old = storage.stored(ctx.state, app)
        new = storage.removed(app, old, gone)
        storage.check_change(ctx, app, old, new)
        click.echo(f"-----> Unmounting {gone.source} from {gone.target} in {app}")
        _change(ctx, app, new, f"storage:unmount {gone.source}:{gone.target}", no_restart)
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"storage:unmount {gone.source}:{gone.target}")


@storage_group.command("list")
@click.argument("app")
@format_option
@click.pass_obj
def list_(ctx: Context, app: str, fmt: str) -> None:
    """List the app's mounts."""
    authorized_app(ctx, app)
    mounts = storage.stored(ctx.state, app)
    if fmt == "json":
        click.echo(storage.dumps(ctx.state, mounts))
        return
    click.echo(f"-----> {app} volume bind-mounts:")
    for m in mounts:
        click.echo(f"       {m.engine_source(ctx.state)}:{m.target}" + (":ro" if m.read_only else ""))


@storage_group.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show where the app's mounts apply."""
    authorized_app(ctx, app)
    mounts = storage.stored(ctx.state, app)
    current = ctx.state.current_release(app)
    binds = " ".join(f"-v {m.engine_source(ctx.state)}:{m.target}" + (":ro" if m.read_only else "")
                     for m in mounts)
    running = current.mounts if current is not None else []
    print_report(f"{app} storage information", {
        "storage build mounts": "",  # builds never see mounts (as on Dokku): an image is the same everywhere
        "storage deploy mounts": binds,
        "storage run mounts": binds,
        "storage mounts": storage.specs(mounts) if fmt == "json" else storage.describe(mounts),
        "storage running release": current.name if current is not None else "",
        "storage running mounts": running if fmt == "json" else storage.describe(running),
        "storage pending": current is not None and running != storage.specs(mounts),
    }, fmt)


def register(cli: click.Group) -> None:
    cli.add_command(storage_group)
