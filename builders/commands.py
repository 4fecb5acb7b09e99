"""The builders' commands: `stack`, `builder`, `builder-dockerfile`, `builder-pack` and `buildpacks`.

Thin: parse, authorise, call builders.properties (or a service), print. Docker is imported only when a
command needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from pushdock.apps import authorized_app, require_admin
from pushdock.commands import echo_progress, format_option, group, print_report, print_table
from pushdock.errors import UsageError
from pushdock.state import GLOBAL

if TYPE_CHECKING:
    from pushdock.context import Context


def _changed(ctx: Context, app: str, summary: str) -> None:
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=summary)


def _echo_set(app: str, what: str, stored: str | None) -> None:
    if stored is None:
        click.echo(f"-----> Unset {what} for {app}")
    else:
        click.echo(f"-----> Set {what} to {stored} for {app}")


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
    from builders import stack as service  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    require_admin(ctx)
    image = ctx.settings.stack_image
    existing = None if force else service.stack_image_info(image)
    if existing is not None:
        click.echo(f"{image} exists ({existing.size / 1e6:.0f} MB); use --force to rebuild")
        return
    kwargs: dict[str, Any] = {"mirror": mirror} if mirror else {}
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
    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    if key != properties.SELECTED:
        raise UsageError(f"unknown builder property {key!r}: use {properties.SELECTED}")
    stored = properties.set_selected(ctx.state, app, value, known=ctx.bus.registry("builders"))
    _echo_set(app, f"builder {key}", stored)
    _changed(ctx, app, f"builder:set {key} {stored or ''}".rstrip())


@builder.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def builder_report(ctx: Context, app: str, fmt: str) -> None:
    """Show the selected and detected builder, and why.

    Detection runs on the last deployed commit (exported from the app's repository).
    """
    from builders.report import builder_report as report  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    print_report(f"{app} builder information", report(ctx, app), fmt)


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
    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    stored = properties.set_dockerfile_property(ctx.state, app, key, value)
    _echo_set(app, key, stored)
    _changed(ctx, app, f"builder-dockerfile:set {key} {stored or ''}".rstrip())


@builder_dockerfile.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def builder_dockerfile_report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's Dockerfile path and build args."""
    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    fields = {
        "dockerfile path": properties.get_dockerfile_path(ctx.state, app) or "Dockerfile",
        "build args": ",".join(properties.get_build_args(ctx.state, app)),
    }
    print_report(f"{app} builder-dockerfile information", fields, fmt)


# -- builder-pack:set [--global|APP] builder IMAGE ------------------------------------------------
@group("builder-pack", "Settings of the pack (Cloud Native Buildpacks) builder.", default_verb="report")
def builder_pack() -> None:
    pass


@builder_pack.command("set")
@click.option("--global", "is_global", is_flag=True, help="Set the default of every app (admin only).")
@click.argument("args", nargs=-1, required=True, metavar="[APP] KEY [IMAGE]")
@click.pass_obj
def builder_pack_set(ctx: Context, is_global: bool, args: tuple[str, ...]) -> None:
    """Set the CNB builder image, per app or --global.

    `builder-pack:set APP builder IMAGE` or `builder-pack:set --global builder IMAGE`; no IMAGE unsets it.
    """
    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    if is_global:
        require_admin(ctx)
        scope, rest = GLOBAL, args
    else:
        scope, rest = args[0], args[1:]
        authorized_app(ctx, scope)
    if not 1 <= len(rest) <= 2:
        raise UsageError("usage: builder-pack:set [--global|APP] builder [IMAGE]")
    stored = properties.set_pack_property(ctx.state, scope, rest[0], rest[1] if len(rest) == 2 else "")
    _echo_set("every app" if is_global else scope, f"pack {rest[0]}", stored)
    if not is_global:
        _changed(ctx, scope, f"builder-pack:set {rest[0]} {stored or ''}".rstrip())


@builder_pack.command("report")
@click.argument("app")
@format_option
@click.pass_obj
def builder_pack_report(ctx: Context, app: str, fmt: str) -> None:
    """Show the app's CNB builder image."""
    import shutil  # noqa: PLC0415 -- start-up: shutil loads when first used

    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    image, where = properties.get_pack_builder(ctx.state, app)
    fields = {"builder": image, "builder from": where, "pack cli": shutil.which("pack") or "not installed"}
    print_report(f"{app} builder-pack information", fields, fmt)


# -- buildpacks:add|set|remove|clear|list APP ------------------------------------------------------
@group("buildpacks", "The app's buildpacks (herokuish builder), run in order.", default_verb="list")
def buildpacks() -> None:
    pass


index_option = click.option("--index", type=int, default=None, metavar="N", help="1-based position in the list.")


@buildpacks.command("add")
@index_option
@click.argument("app")
@click.argument("url")
@click.pass_obj
def buildpacks_add(ctx: Context, index: int | None, app: str, url: str) -> None:
    """Add a buildpack to the app's list.

    URL is a git URL (optionally #ref), heroku/NAME, pushdock/NAME or ./folder; it goes last or at --index.
    """
    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    _echo_list(app, properties.add_buildpack(ctx.state, app, url, index))
    _changed(ctx, app, f"buildpacks:add {_shown(url)}")


@buildpacks.command("set")
@index_option
@click.argument("app")
@click.argument("url")
@click.pass_obj
def buildpacks_set(ctx: Context, index: int | None, app: str, url: str) -> None:
    """Set the app's buildpack.

    Without --index, URL becomes the only one; with --index N, it replaces (or appends at) position N.
    """
    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    _echo_list(app, properties.set_buildpack(ctx.state, app, url, index))
    _changed(ctx, app, f"buildpacks:set {_shown(url)}")


@buildpacks.command("remove")
@index_option
@click.argument("app")
@click.argument("url", required=False)
@click.pass_obj
def buildpacks_remove(ctx: Context, index: int | None, app: str, url: str | None) -> None:
    """Remove a buildpack by URL or by --index."""
    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    _echo_list(app, properties.remove_buildpack(ctx.state, app, url, index))
    _changed(ctx, app, f"buildpacks:remove {_shown(url) if url else f'--index {index}'}")


@buildpacks.command("clear")
@click.argument("app")
@click.pass_obj
def buildpacks_clear(ctx: Context, app: str) -> None:
    """Forget the app's buildpacks.

    The next build detects a shipped buildpack again.
    """
    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    properties.clear_buildpacks(ctx.state, app)
    click.echo(f"-----> Cleared the buildpacks of {app}")
    _changed(ctx, app, "buildpacks:clear")


@buildpacks.command("list")
@click.argument("app")
@format_option
@click.pass_obj
def buildpacks_list(ctx: Context, app: str, fmt: str) -> None:
    """List the app's buildpacks in the order they run.

    Credentials in URLs are shown as ***.
    """
    from builders import properties  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    authorized_app(ctx, app)
    rows = [{"index": i, "buildpack": _shown(u)} for i, u in enumerate(properties.get_buildpacks(ctx.state, app), 1)]
    print_table(rows, ("index", "buildpack"), fmt)


def _shown(url: str) -> str:
    from builders.buildpack_source import hide_credentials  # noqa: PLC0415 -- start-up: command modules load with the CLI; this loads when the command runs

    return hide_credentials(url)


def _echo_list(app: str, urls: list[str]) -> None:
    click.echo(f"-----> Buildpacks of {app}: {', '.join(_shown(u) for u in urls) or 'none (detection)'}")


COMMANDS = (stack, builder, builder_dockerfile, builder_pack, buildpacks)
