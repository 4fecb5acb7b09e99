"""The git server as a plugin: its commands (`serve`, `ssh-keys:*`). Imports stay cheap here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hooks.specs import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def register_commands(cli: click.Group) -> None:
    from gitserver.commands import serve_cmd, ssh_keys

    cli.add_command(serve_cmd, name="serve")
    cli.add_command(ssh_keys)
