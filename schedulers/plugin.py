"""The built-in schedulers, registered through pushdock's own hooks, and their commands.

Cheap to import: the docker SDK is imported inside the schedulers' methods, when first used; the
command groups (scheduler:*, swarm:*, registry:*) load when the CLI lists or runs plugin commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hooks.specs import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def register_schedulers() -> dict[str, Any]:
    from schedulers.docker_local import DockerLocalScheduler
    from schedulers.swarm import SwarmScheduler

    return {DockerLocalScheduler.name: DockerLocalScheduler(), SwarmScheduler.name: SwarmScheduler()}


@hookimpl
def register_commands(cli: click.Group) -> None:
    from schedulers.swarm_commands import COMMANDS

    for cmd in COMMANDS:
        cli.add_command(cmd)
