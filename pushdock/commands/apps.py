"""apps:create|destroy|list|rename|clone|report|lock|unlock"""

from __future__ import annotations

import time

import click

from pushdock import apps as service
from pushdock.commands import echo_progress, format_option, group, print_report, print_table
from pushdock.context import Context
from pushdock.errors import UsageError


@group("apps", "Manage apps.", default_verb="list")
def apps() -> None:
    pass


@apps.command("create")
@click.argument("app")
@click.pass_obj
def create(ctx: Context, app: str) -> None:
    """Create an app (a first `git push` does this too)."""
    service.authorize(ctx, app, admin=True)
    service.create_app(ctx, app)
    click.echo(f"-----> Created {app}")


@apps.command("destroy")
@click.argument("app")
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def destroy(ctx: Context, app: str, force: bool) -> None:
    """Stop and remove an app, its repo, releases and config."""
    service.authorize(ctx, app, admin=True)
    ctx.state.require_app(app)
    if not force:
        raise UsageError(f"destroying {app} cannot be undone: run `apps:destroy {app} --force`")
    service.destroy_app(ctx, app)
    click.echo(f"-----> Destroyed {app}")


@apps.command("list")
@format_option
@click.pass_obj
def list_(ctx: Context, fmt: str) -> None:
    """List the apps you can see."""
    names = [a for a in ctx.state.list_apps() if ctx.identity.may_use(a)]
    if fmt == "json":
        print_table([{"name": n} for n in names], ["name"], fmt)
        return
    click.echo("=====> My Apps")
    for n in names:
        click.echo(n)


@apps.command("rename")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def rename(ctx: Context, old: str, new: str) -> None:
    """Rename an app (its containers restart under the new name)."""
    service.authorize(ctx, old, admin=True)
    service.rename_app(ctx, old, new)
    click.echo(f"-----> Renamed {old} to {new}")


@apps.command("clone")
@click.argument("old")
@click.argument("new")
@click.option("--skip-deploy", is_flag=True, help="Copy only: do not deploy the clone.")
@click.option("--ignore-existing", is_flag=True, help="If NEW exists, say so and succeed (nothing is copied).")
@click.pass_obj
def clone(ctx: Context, old: str, new: str, skip_deploy: bool, ignore_existing: bool) -> None:
    """Clone an app: repo, config and settings (not domains), then deploy it."""
    service.authorize(ctx, old, admin=True)
    if ignore_existing and ctx.state.app_exists(new):
        click.echo(f"=====> {new} exists: nothing cloned")
        return
    release = service.clone_app(ctx, old, new, echo_progress(), deploy=not skip_deploy)
    click.echo(f"-----> Cloned {old} to {new}" + (f" ({release.name})" if release else ""))


@apps.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def report(ctx: Context, app: str, fmt: str) -> None:
    """Show an app's repo, deploy branch, current release and domains."""
    service.authorize(ctx, app)
    ctx.state.require_app(app)
    current = ctx.state.current_release(app)
    created = float(ctx.state.get("apps", app, "created") or 0)
    fields = {
        "app": app,
        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) if created else "",
        "deploy branch": ctx.state.get("git", app, "deploy-branch") or "(first branch pushed)",
        "deployed": bool(current),
        "release": current.name if current else "",
        "sha": current.sha if current else "",
        "image": current.image if current else "",
        "domains": " ".join(ctx.domains(app)),
        "locked": bool(ctx.state.get("apps", app, "locked")),
        "repo": str(ctx.state.repo_path(app)),
    }
    print_report(f"{app} app information", fields, fmt)


@apps.command("lock")
@click.argument("app")
@click.pass_obj
def lock(ctx: Context, app: str) -> None:
    """Refuse deploys of the app until `apps:unlock`."""
    service.authorize(ctx, app)
    ctx.state.require_app(app)
    ctx.state.set("apps", app, "locked", "1")
    click.echo(f"-----> Deploys of {app} are locked")


@apps.command("unlock")
@click.argument("app")
@click.pass_obj
def unlock(ctx: Context, app: str) -> None:
    """Allow deploys of the app again."""
    service.authorize(ctx, app)
    ctx.state.require_app(app)
    ctx.state.delete("apps", app, "locked")
    click.echo(f"-----> Deploys of {app} are unlocked")


def register(cli: click.Group) -> None:
    cli.add_command(apps)
