"""The built-in proxies, registered through pushdock's own hooks."""

from __future__ import annotations

from typing import Any

from hooks.specs import hookimpl


@hookimpl
def register_proxies() -> dict[str, Any]:
    from proxies.nginx import NginxProxy

    return {"nginx": NginxProxy()}
