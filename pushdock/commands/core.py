"""version, help."""

from __future__ import annotations

import click

from pushdock import __version__


@click.command("version")
def version() -> None:
    """Print pushdock's version."""
    click.echo(f"pushdock {__version__}")


@click.command("help")
@click.pass_context
def help_(ctx: click.Context) -> None:
    """List every command."""
    assert ctx.parent is not None
    click.echo(ctx.parent.get_help())


def register(cli: click.Group) -> None:
    cli.add_command(version)
    cli.add_command(help_, name="help")
