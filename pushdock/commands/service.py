"""service:install|uninstall — `pushdock serve` as a systemd service (host only)."""

from __future__ import annotations

from pathlib import Path

import click

from pushdock import service
from pushdock.commands import group
from pushdock.context import Context
from pushdock.errors import Forbidden

unit_dir_option = click.option(
    "--unit-dir", type=click.Path(path_type=Path), default=service.UNIT_DIR, show_default=True,
    help="Where the unit goes (a directory systemd reads units from).")
env_file_option = click.option(
    "--env-file", type=click.Path(path_type=Path), default=service.ENV_FILE, show_default=True,
    help="The settings file the unit reads.")


@group("service", "Run `pushdock serve` as a systemd service.")
def service_group() -> None:
    pass


def _host_only(ctx: Context, verb: str) -> None:
    if ctx.identity.door != "cli":
        raise Forbidden(f"service:{verb} runs on the host only")


@service_group.command("install")
@unit_dir_option
@env_file_option
@click.option("--no-enable", is_flag=True, help="Do not enable the service at boot.")
@click.option("--no-start", is_flag=True, help="Do not start the service now.")
@click.pass_obj
def install(ctx: Context, unit_dir: Path, env_file: Path, no_enable: bool, no_start: bool) -> None:
    """Install `pushdock serve` as a systemd service.

    Writes the unit and, if it does not exist, the settings file (every PUSHDOCK_ setting, commented);
    then, where systemd runs, reloads it and enables and starts the service.
    """
    _host_only(ctx, "install")
    target = service.Target(unit_dir=unit_dir, env_file=env_file, enable=not no_enable, start=not no_start)
    for line in service.install(ctx.settings, target, booted=service.systemd_running()):
        click.echo(f"-----> {line}")


@service_group.command("uninstall")
@unit_dir_option
@env_file_option
@click.pass_obj
def uninstall(ctx: Context, unit_dir: Path, env_file: Path) -> None:
    """Remove the systemd service; the data stays.

    Stops and disables the service where systemd runs; the proxy and the apps keep running,
    and the data dir and the settings file stay.
    """
    _host_only(ctx, "uninstall")
    target = service.Target(unit_dir=unit_dir, env_file=env_file)
    for line in service.uninstall(ctx.settings, target, booted=service.systemd_running()):
        click.echo(f"-----> {line}")


def register(cli: click.Group) -> None:
    cli.add_command(service_group)
