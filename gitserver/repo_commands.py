"""repo:gc APP and repo:purge-cache APP — housekeeping of an app's bare repository and build caches."""

from __future__ import annotations

import click

from pushdock import proc
from pushdock.apps import authorized_app
from pushdock.commands import group
from pushdock.context import Context


@group("repo", "Housekeeping of an app's repository and build caches.")
def repo() -> None:
    pass


@repo.command("gc")
@click.argument("app")
@click.pass_obj
def gc(ctx: Context, app: str) -> None:
    """Run `git gc --aggressive` on the app's repository (under the app lock: no push meanwhile)."""
    authorized_app(ctx, app)
    path = ctx.state.repo_path(app)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        before = _size(path)
        # --prune=now is safe under the lock: no push has objects in flight
        proc.run(["git", "--git-dir", str(path), "gc", "--aggressive", "--prune=now", "--quiet"], timeout=3600)
    click.echo(f"=====> {app}: repository {_mib(before)} -> {_mib(_size(path))}")


@repo.command("purge-cache")
@click.argument("app")
@click.pass_obj
def purge_cache(ctx: Context, app: str) -> None:
    """Empty the app's build caches: its next build starts from scratch."""
    authorized_app(ctx, app)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        purged = [p for p in ctx.bus.call("purge_cache", ctx=ctx, app=app) if p]
    click.echo(f"=====> {app}: purged {', '.join(purged) if purged else 'nothing (no build cache)'}")


def _size(path: object) -> int:
    from pathlib import Path

    return sum(p.lstat().st_size for p in Path(str(path)).rglob("*"))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"
