"""The built-in services plugin: PostgreSQL and Redis, their commands, and the triggers that join linked apps
to services' networks and keep links through apps:destroy and apps:rename."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pushdock.specs import hookimpl
from services import BACKUPS

if TYPE_CHECKING:
    import click

    from pushdock.context import Context

KINDS = ("postgres", "redis")  # the built-in kinds, in the order `help` lists them


# What the hooks below import lazily: serve's zygote imports it once (pushdock/zygote.py, bus.warm_builtins).
WARM = (
    "services.commands", "services.engine", "services.model", "services.links", "services.postgres",
    "services.redis",
)


@hookimpl
def register_services() -> dict[str, Any]:
    from services.postgres import Postgres  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs
    from services.redis import Redis  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return {"postgres": Postgres(), "redis": Redis()}


@hookimpl
def register_commands(cli: click.Group) -> None:
    from services.commands import group  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    for kind in KINDS:
        cli.add_command(group(kind, backups=kind in BACKUPS))


@hookimpl
def app_networks(ctx: Context, app: str) -> list[str]:
    from services import engine, model  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    kinds = sorted(ctx.bus.registry("services"))
    linked = model.linked_to(ctx.state, app, kinds)
    if linked and getattr(ctx.scheduler(app), "overlay_networks", False):  # swarm tasks join overlays only
        return [engine.overlay(ctx, s) for s in linked]
    return [engine.resource_name(ctx, s) for s in linked]


@hookimpl
def post_delete(ctx: Context, app: str) -> None:
    from services import links  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    links.app_gone(ctx, sorted(ctx.bus.registry("services")), app)


@hookimpl
def post_app_rename(ctx: Context, old_app: str, new_app: str) -> None:
    from services import links  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    links.app_gone(ctx, sorted(ctx.bus.registry("services")), old_app, new_app)


@hookimpl
def timer_jobs(ctx: Context) -> dict[str, tuple[str, Any]]:
    """Scheduled backups (`postgres:backup-schedule`) of the kinds that have backups."""
    from services import backups  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    kinds: dict[str, Any] = {k: v for k, v in ctx.bus.registry("services").items() if k in BACKUPS}  # Backupable
    return backups.timer_jobs(ctx, kinds)


@hookimpl
def clone_app_services(ctx: Context, source_app: str, app: str, data: str) -> list[str]:
    from services import copies  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return copies.clone_for(ctx, ctx.bus.registry("services"), source_app, app, data)


@hookimpl
def app_copy_services(ctx: Context, app: str) -> list[str]:
    from services import copies  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return copies.made_for(ctx, sorted(ctx.bus.registry("services")), app)


@hookimpl
def destroy_app_services(ctx: Context, services: list[str]) -> None:
    from services import copies  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    copies.destroy(ctx, services)
