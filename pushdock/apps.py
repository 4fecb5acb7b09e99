"""App lifecycle services used by commands and by the git server (first push creates the app)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pushdock.errors import Forbidden
from pushdock.state import validate_app_name

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import Release


def authorize(ctx: Context, app: str, *, admin: bool = False) -> None:
    """Raise Forbidden unless the caller may act on `app` (or is an admin, when `admin`)."""
    who = ctx.identity
    if admin:
        require_admin(ctx)
    if not who.may_use(app):
        raise Forbidden(f"{who.name} ({who.role}) has no access to app {app}")


def authorized_app(ctx: Context, app: str, *, admin: bool = False) -> str:
    """`app` if the caller may act on it (see authorize) and it exists; Forbidden or NotFound if not."""
    authorize(ctx, app, admin=admin)
    return ctx.state.require_app(app)


def require_admin(ctx: Context) -> None:
    """Raise Forbidden unless the caller is an admin (host-wide commands and `--global` settings)."""
    who = ctx.identity
    if who.role != "admin":
        raise Forbidden(f"{who.name} ({who.role}) may not run this command: admin only")


def authorize_domains(ctx: Context, app: str, names: Iterable[str]) -> None:
    """Forbidden unless the caller may give `app` these hostnames: under the global domain (and the global
    suffixes) a deployer may add only names of its own apps (`APP.DOMAIN` and what is under it are reserved
    for app APP, existing or not), elsewhere anything; an admin may add any (docs/proxies.md)."""
    who = ctx.identity
    if who.role == "admin":
        return
    for name in names:
        owner = ctx.reserved_for(name)
        if owner is None or (owner[0] and who.may_use(owner[0])):
            continue
        taker, suffix = owner
        whose = f"reserved for app {taker}" if taker else "reserved for admins"
        raise Forbidden(f"domain {name} is {whose}: under {suffix}, {who.name} ({who.role}) may add only names "
                        f"of its own apps ({app}.{suffix}, www.{app}.{suffix}) or domains outside it",
                        hint="an admin may add any domain")


def create_app(ctx: Context, app: str) -> None:
    validate_app_name(app)
    ctx.state.create_app(app)
    ctx.bus.call("post_create", ctx=ctx, app=app)


def destroy_app(ctx: Context, app: str) -> None:
    ctx.state.require_app(app)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        ctx.bus.call("pre_delete", ctx=ctx, app=app)
        ctx.state.destroy_app(app)
    ctx.bus.call("post_delete", ctx=ctx, app=app)


def rename_app(ctx: Context, old: str, new: str) -> None:
    """Rename by redeploying under the new name, then retiring the old routes and containers."""
    validate_app_name(new)
    ctx.state.require_app(old)
    from pushdock import storage  # noqa: PLC0415 -- start-up: loads only when this path runs (apps:list stays short)

    with ctx.state.app_lock(old, timeout=ctx.settings.lock_timeout):
        ctx.bus.call("pre_delete", ctx=ctx, app=old)
        ctx.state.rename_app(old, new)
        storage.renamed(ctx.state, old, new)  # the app's mounts moved with its properties and releases
    ctx.bus.call("post_app_rename", ctx=ctx, old_app=old, new_app=new)
    with ctx.state.app_lock(new, timeout=ctx.settings.lock_timeout):
        ctx.pipeline.restart(ctx, new)


# Settings a clone does not take: its own identity and history (apps, builds, releases), what names or
# binds it on the host (domains, ports, certificates) and what ties it to a GitHub repository (webhooks).
CLONE_SKIPS = frozenset({"apps", "builds", "releases", "domains", "ports", "certs", "letsencrypt", "webhooks",
                         "previews"})


def clone_app(ctx: Context, old: str, new: str, progress: Progress, *, deploy: bool = True) -> Release | None:
    """A new app `new` with the repo, config and settings of `old` (not its domains); deployed from the
    commit `old` runs unless `deploy` is false. The new release if it deployed."""
    validate_app_name(new)
    state = ctx.state
    state.require_app(old)
    with state.app_lock(old, timeout=ctx.settings.lock_timeout):  # a consistent copy: no push meanwhile
        state.clone_app(old, new, skip=CLONE_SKIPS)
    state.delete("ps", new, "stopped")
    ctx.bus.call("post_create", ctx=ctx, app=new)
    ctx.bus.call("post_app_clone", ctx=ctx, old_app=old, new_app=new)
    current = state.current_release(old)
    if not deploy or current is None or not current.sha:
        return None

    with state.app_lock(new, timeout=ctx.settings.lock_timeout):
        branch = state.get("git", new, "deploy-branch") or "main"
        return ctx.pipeline.deploy_push(ctx, new, current.sha, progress, branch=branch)
