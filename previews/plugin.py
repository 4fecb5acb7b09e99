"""The previews plugin: its commands, `pull_request` deliveries, the ttl and the resumption of deploys whose
worker died on serve's timer, and previews going with their parent app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pushdock.specs import hookimpl

if TYPE_CHECKING:
    import click

    from pushdock.context import Context

EXPIRY = "* * * * *"  # every minute: a ttl is hours or days, checked to the minute


@hookimpl
def register_commands(cli: click.Group) -> None:
    from previews.commands import previews  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    cli.add_command(previews)


@hookimpl
def webhook_event(ctx: Context, app: str, event: str, delivery: str, payload: dict[str, Any]) -> tuple[int, str] | None:
    if event != "pull_request":
        return None
    from previews import webhook  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return webhook.handle(ctx, app, event, delivery, payload)


@hookimpl
def timer_jobs(ctx: Context) -> dict[str, tuple[str, Any]]:
    from previews import deploy, model  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    if not model.parents(ctx):
        return {}
    return {"previews-expire": (EXPIRY, lambda: deploy.expire(ctx)),
            "previews-resume": (EXPIRY, lambda: deploy.resume(ctx))}


@hookimpl
def pre_delete(ctx: Context, app: str) -> None:
    """A parent's previews go before it; a preview itself needs nothing here."""
    from previews import deploy, model  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    for pr in sorted(model.records(ctx, app)):
        deploy.close(ctx, app, pr, reason="parent destroyed")


@hookimpl
def post_app_rename(ctx: Context, old_app: str, new_app: str) -> None:
    """The records moved with the parent's settings; its previews, named after the old name, go (a new commit
    on a pull request makes them again under the new one)."""
    from previews import deploy, model  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    for pr in sorted(model.records(ctx, new_app)):
        deploy.close(ctx, new_app, pr, reason="parent renamed", name=f"{old_app}{model.SECTION}{pr}")


@hookimpl
def post_delete(ctx: Context, app: str) -> None:
    ctx.state.forget("previews", app)
