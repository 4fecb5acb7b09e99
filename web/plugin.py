"""The web door as a plugin: it provides the HTTP door `serve` opens. Imports stay cheap here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pushdock.specs import hookimpl

if TYPE_CHECKING:
    from pushdock.context import Context


@hookimpl
def http_door(ctx: Context, health: Any) -> Any:
    from web.door import HttpDoor  # noqa: PLC0415 -- start-up: loads only when this path runs

    return HttpDoor(ctx, health=health)
