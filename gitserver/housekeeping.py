"""Housekeeping of an app's repository and build caches (`repo:gc`, `repo:purge-cache`), under the app lock."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pushdock import proc

if TYPE_CHECKING:
    from pushdock.context import Context


def gc(ctx: Context, app: str) -> tuple[int, int]:
    """`git gc --aggressive` of the app's bare repository; its size in bytes before and after."""
    path = ctx.state.repo_path(app)
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        before = _size(path)
        # --prune=now is safe under the lock: no push has objects in flight
        proc.run(["git", "--git-dir", str(path), "gc", "--aggressive", "--prune=now", "--quiet"], timeout=3600)
        return before, _size(path)


def purge_caches(ctx: Context, app: str) -> list[str]:
    """Fire `purge-cache` (no build runs meanwhile); what each builder purged."""
    with ctx.state.app_lock(app, timeout=ctx.settings.lock_timeout):
        return [str(p) for p in ctx.bus.call("purge_cache", ctx=ctx, app=app) if p]


def _size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*"))
