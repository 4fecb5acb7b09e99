"""Built-in implementations of lifecycle triggers that belong to no single component."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hooks.specs import hookimpl

if TYPE_CHECKING:
    from pushdock.context import Context


@hookimpl
def pre_delete(ctx: Context, app: str) -> None:
    ctx.proxy().remove(ctx, app)
    ctx.scheduler(app).stop(ctx, app)
