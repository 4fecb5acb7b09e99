"""Services of an app's copy (a preview app): for each service linked to the source app, a new one of the same
kind linked to the copy, empty or restored from the source's newest verified backup; and their removal.

Fired through `clone-app-services` and `destroy-app-services` (pushdock/specs.py), so previews/ never imports this.
The copy's service is named after the copy and its kind (`APP-pr-7-postgres`; `APP-pr-7-postgres-2` for a second
one): not the app's own name, because service records and app properties share DATA_DIR/data/PLUGIN/NAME and
`apps:destroy APP` removes every `*/APP` there.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from loguru import logger

from pushdock.errors import PushdockError, UsageError
from pushdock.progress import Progress
from services import BACKUPS, backups, engine, model

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.datastore import Datastore

DATA = ("empty", "clone")


def _free_name(ctx: Context, kind: str, app: str) -> str:
    base = f"{app[:62 - len(kind)].rstrip('-')}-{kind}"
    for i in range(1, 100):
        name = base if i == 1 else f"{base[:60].rstrip('-')}-{i}"
        if model.find(ctx.state, kind, name) is None:
            return name
    raise PushdockError(f"no free {kind} service name for {app}")


def newest_verified(ctx: Context, service: model.Service) -> backups.Backup:
    verified = [b for b in backups.listed(ctx, service) if b.verified == "yes"]
    if not verified:
        raise PushdockError(f"{service.kind} service {service.name} has no verified backup to clone "
                            f"(run {service.kind}:backup {service.name} --verify)")
    return max(verified, key=lambda b: b.time)


def clone_for(ctx: Context, kinds: dict[str, Datastore], source_app: str, app: str, data: str) -> list[str]:
    """New services for `app` like those linked to `source_app` (linked, its env set, no deploy)."""
    if data not in DATA:
        raise UsageError(f"data must be one of {', '.join(DATA)}, not {data[:20]!r}")
    made: list[str] = []
    try:
        for source in model.linked_to(ctx.state, source_app, sorted(kinds)):
            ds = kinds[source.kind]
            var = next(x.var for x in source.links if x.app == source_app)
            copy = _create(ctx, ds, _free_name(ctx, source.kind, app), app)
            made.append(f"{copy.kind}:{copy.name}")
            if data == "clone" and source.kind in BACKUPS:
                backup = newest_verified(ctx, source)
                with engine.engine_errors(f"restoring {backup.file} into {copy.kind} service {copy.name}"):
                    c = engine.running(ctx, copy)
                    backups._exec_from_file(engine.client().api, c.id, ds.import_argv(copy.name), backup.path)
                logger.info("service cloned from backup", service=copy.name, source=source.name, file=backup.file)
            _link(ctx, ds, copy, app, var)
    except BaseException:
        destroy(ctx, made)
        raise
    return made


def _create(ctx: Context, ds: Datastore, name: str, app: str) -> model.Service:
    progress = Progress(lambda line: logger.debug("service copy output", line=line))
    with ctx.state.global_lock(model.plugin(ds.kind)):
        service, password = model.create(ctx.state, ds.kind, name, made_for=app)
        try:
            engine.ensure_image(ds, progress)
            engine.start(ctx, ds, service, password)
        except BaseException:
            engine.remove(ctx, service)
            model.forget(ctx.state, service)
            raise
    ctx.bus.call("post_service_create", ctx=ctx, service=ds.kind, name=name)
    return service


def _link(ctx: Context, ds: Datastore, service: model.Service, app: str, var: str) -> None:
    """Link without a deploy: the copy deploys next, with this variable in its env."""
    with ctx.state.global_lock(model.plugin(ds.kind)):
        model.save(ctx.state, replace(model.get(ctx.state, ds.kind, service.name), links=(model.Link(app, var),)))
    url = ds.url(service.name, model.password(ctx.state, service), engine.host(service))
    ctx.state.set_env(app, ctx.state.get_env(app) | {var: url})


def made_for(ctx: Context, kinds: list[str], app: str) -> list[str]:
    """The services (`KIND:NAME`) `clone_for` made for `app`, whether or not its caller got the list back."""
    return [f"{s.kind}:{s.name}" for kind in sorted(kinds) for s in model.all_of(ctx.state, kind) if s.made_for == app]


def destroy(ctx: Context, names: list[str]) -> None:
    """Remove these services (`KIND:NAME`) with their data, links or not (their app is gone). The engine's
    resources go even if the record went already (a same-named app destroyed), so nothing is left running."""
    for entry in names:
        kind, _, name = entry.partition(":")
        with ctx.state.global_lock(model.plugin(kind)):
            service = model.find(ctx.state, kind, name) or model.Service(kind, model.check_name(kind, name), 0.0)
            ctx.bus.call("pre_service_destroy", ctx=ctx, service=kind, name=name)
            engine.remove(ctx, service)
            model.forget(ctx.state, service)
        logger.info("service destroyed", kind=kind, name=name)
