"""The built-in schedulers, registered through pushdock's own hooks, and their commands.

Cheap to import: the docker SDK is imported inside the schedulers' methods, when first used; the
command groups (scheduler:*, swarm:*, registry:*, resource:*,
docker-options:*, network:*) load when the CLI lists or runs plugin commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pushdock.specs import hookimpl

if TYPE_CHECKING:
    import click


# What the hooks below import lazily: serve's zygote imports it once (pushdock/zygote.py, bus.warm_builtins).
WARM = (
    "schedulers.docker_local.scheduler", "schedulers.docker_local.start", "schedulers.docker_local.run",
    "schedulers.docker_local.logs", "schedulers.swarm.scheduler", "schedulers.swarm.commands",
    "schedulers.docker_options_commands", "schedulers.network_commands", "schedulers.resource_commands",
)


@hookimpl
def register_schedulers() -> dict[str, Any]:
    from schedulers.docker_local.scheduler import DockerLocalScheduler  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs
    from schedulers.swarm.scheduler import SwarmScheduler  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return {DockerLocalScheduler.name: DockerLocalScheduler(), SwarmScheduler.name: SwarmScheduler()}


@hookimpl
def register_commands(cli: click.Group) -> None:
    from schedulers import docker_options_commands, network_commands, resource_commands  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs
    from schedulers.swarm import commands as swarm_commands  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    for cmd in [*swarm_commands.COMMANDS, *resource_commands.COMMANDS, *docker_options_commands.COMMANDS,
                *network_commands.COMMANDS]:
        cli.add_command(cmd)
