"""Linking a service to an app: its URL in the app's environment as a new release, its network joined.

The link is recorded before the release deploys, so the release's new containers join the service's network
(the app-networks trigger); if the release fails the record is put back as it was. Unlinking is the mirror.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from hooks import pipeline
from pushdock.commands import echo_progress
from pushdock.errors import Conflict, NotFound, PushdockError
from services import engine, model

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.datastore import Datastore


def _apply(ctx: Context, app: str, env: dict[str, str], why: str, no_restart: bool) -> None:
    if no_restart or pipeline.new_release(ctx, app, why=why, env=env, progress=echo_progress()) is None:
        ctx.state.set_env(app, env)


def _set_links(ctx: Context, kind: str, name: str, links: tuple[model.Link, ...]) -> model.Service:
    with ctx.state.global_lock(model.plugin(kind)):
        service = replace(model.get(ctx.state, kind, name), links=links)
        model.save(ctx.state, service)
        return service


def link(ctx: Context, ds: Datastore, name: str, app: str, *, alias: str | None, no_restart: bool) -> str:
    """Link and redeploy; the variable set."""
    kind = ds.kind
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        service = model.visible(ctx, kind, name) if ctx.identity.role != "admin" else model.get(ctx.state, kind, name)
        if any(x.app == app for x in service.links):
            raise Conflict(f"{kind} service {name} is already linked to {app}")
        scheduler = ctx.scheduler(app)
        if not getattr(scheduler, "joins_networks", False):
            raise PushdockError(f"apps on the {scheduler.name} scheduler cannot reach services yet: link an app "
                                "that runs on docker-local")
        env = ctx.state.get_env(app)
        var = model.choose_var(ds, service, env, alias)
        engine.running(ctx, service)
        before = service.links
        _set_links(ctx, kind, name, (*before, model.Link(app, var)))
        try:
            url = ds.url(name, model.password(ctx.state, service), engine.host(service))
            _apply(ctx, app, env | {var: url}, f"{kind}:link {name}", no_restart)
        except BaseException:
            _set_links(ctx, kind, name, before)
            raise
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"{kind}:link {name} ({var})")
    ctx.bus.call("post_service_link", ctx=ctx, service=kind, name=name, app=app)
    return var


def unlink(ctx: Context, ds: Datastore, name: str, app: str, *, no_restart: bool) -> str:
    """Unlink and redeploy; the variable unset."""
    kind = ds.kind
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        service = model.visible(ctx, kind, name)
        mine = [x for x in service.links if x.app == app]
        if not mine:
            raise NotFound(f"{kind} service {name} is not linked to {app}")
        var = mine[0].var
        env = {k: v for k, v in ctx.state.get_env(app).items() if k != var}
        _set_links(ctx, kind, name, tuple(x for x in service.links if x.app != app))
        try:
            _apply(ctx, app, env, f"{kind}:unlink {name}", no_restart)
        except BaseException:
            _set_links(ctx, kind, name, service.links)
            raise
    ctx.bus.call("post_settings_change", ctx=ctx, app=app, summary=f"{kind}:unlink {name} ({var})")
    ctx.bus.call("post_service_unlink", ctx=ctx, service=kind, name=name, app=app)
    return var


def app_gone(ctx: Context, kinds: list[str], app: str, new: str | None = None) -> None:
    """apps:destroy (new None) drops the app's links; apps:rename moves them to the new name."""
    for service in model.linked_to(ctx.state, app, kinds):
        kept = tuple(x if x.app != app else model.Link(new or app, x.var) for x in service.links if new or x.app != app)
        _set_links(ctx, service.kind, service.name, kept)
