"""The built-in builders plugin: the Dockerfile builder, and the `stack`, `builder`, `builder-dockerfile` commands.

Imports stay cheap: every CLI start loads this module; docker is imported only when a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from hooks.specs import hookimpl
from pushdock.apps import authorize
from pushdock.commands import echo_progress, format_option, group, print_report
from pushdock.errors import Forbidden, UsageError

if TYPE_CHECKING:
    from pushdock.context import Context


@hookimpl
def register_builders() -> dict[str, Any]:
    from builders.dockerfile import DockerfileBuilder

    return {"dockerfile": DockerfileBuilder()}


@hookimpl
def register_commands(cli: click.Group) -> None:
    for cmd in (stack, builder, builder_dockerfile):
        cli.add_command(cmd)


def _app(ctx: Context, app: str) -> str:
    authorize(ctx, app)
    return ctx.state.require_app(app)


# -- stack:build -----------------------------------------------------------------------------------
@group("stack", "Build the local base image apps build FROM.")
def stack() -> None:
    pass


@stack.command("build")
@click.option("--force", is_flag=True, help="Rebuild even if the image exists.")
@click.option("--mirror", default=None, metavar="URL", help="Debian mirror (default deb.debian.org).")
@click.pass_obj
def stack_build(ctx: Context, force: bool, mirror: str | None) -> None:
    """Build the stack image (settings.stack_image) with debootstrap; skipped if it exists."""
    from builders import stack as service

    if ctx.identity.role != "admin":
        raise Forbidden(f"{ctx.identity.name} ({ctx.identity.role}) may not run this command: admin only")
    image = ctx.settings.stack_image
    existing = None if force else service.stack_image_info(image)
    if existing is not None:
        click.echo(f"{image} exists ({existing.size / 1e6:.0f} MB); use --force to rebuild")
        return
    kwargs = {"mirror": mirror} if mirror else {}
    built = service.build_stack_image(ctx, echo_progress(), image=image, **kwargs)
    click.echo(f"{built.image} built: {built.size / 1e6:.0f} MB in {built.seconds:.0f}s")


# -- builder:set APP selected NAME / builder:report APP ---------------------------------------------
@group("builder", "Choose how an app is built.", default_verb="report")
def builder() -> None:
    pass


@builder.command("set")
@click.argument("app")
@click.argument("key")
@click.argument("value", required=False, default="")
@click.pass_obj
def builder_set(ctx: Context, app: str, key: str, value: str) -> None:
    """Force a builder: selected dockerfile|herokuish|pack (no value: detect again)."""
    from builders import properties

    _app(ctx, app)
    if key != properties.SELECTED:
        raise UsageError(f"unknown builder property {key!r}: use {properties.SELECTED}")
    stored = properties.set_selected(ctx.state, app, value, known=ctx.bus.registry("builders"))
    _echo_set(app, f"builder {key}", stored)


@builder.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def builder_report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's selected builder and Dockerfile settings."""
    from builders import properties

    _app(ctx, app)
    fields = {
        "builder selected": properties.get_selected(ctx.state, app) or "",
        "builder dockerfile path": properties.get_dockerfile_path(ctx.state, app) or "",
        "builder build args": ",".join(properties.get_build_args(ctx.state, app)),
    }
    print_report(f"{app} builder information", fields, fmt)


# -- builder-dockerfile:set APP dockerfile-path PATH | build-args KEY1,KEY2 -------------------------
@group("builder-dockerfile", "Settings of the Dockerfile builder.", default_verb="report")
def builder_dockerfile() -> None:
    pass


@builder_dockerfile.command("set")
@click.argument("app")
@click.argument("key")
@click.argument("value", required=False, default="")
@click.pass_obj
def builder_dockerfile_set(ctx: Context, app: str, key: str, value: str) -> None:
    """Set dockerfile-path PATH (relative to the repo root) or build-args KEY1,KEY2 (config keys)."""
    from builders import properties

    _app(ctx, app)
    _echo_set(app, key, properties.set_dockerfile_property(ctx.state, app, key, value))


@builder_dockerfile.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def builder_dockerfile_report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's Dockerfile path and build args."""
    from builders import properties

    _app(ctx, app)
    fields = {
        "dockerfile path": properties.get_dockerfile_path(ctx.state, app) or "Dockerfile",
        "build args": ",".join(properties.get_build_args(ctx.state, app)),
    }
    print_report(f"{app} builder-dockerfile information", fields, fmt)


def _echo_set(app: str, what: str, stored: str | None) -> None:
    if stored is None:
        click.echo(f"-----> Unset {what} for {app}")
    else:
        click.echo(f"-----> Set {what} to {stored} for {app}")
