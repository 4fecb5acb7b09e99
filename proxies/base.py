"""What a proxy is: something that routes an app's domains to its web upstreams."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.routing import Upstream


class Proxy(Protocol):
    name: str

    def ensure_running(self, ctx: Context) -> None:
        """Start the proxy if it does not run (it outlives `pushdock serve`)."""
        ...

    def apply(self, ctx: Context, app: str, domains: list[str], upstreams: list[Upstream]) -> None:
        """Route `domains` to `upstreams`; return only when the new routing is live and the old drained."""
        ...

    def remove(self, ctx: Context, app: str) -> None:
        """Stop routing the app."""
        ...

    def stop(self, ctx: Context) -> None:
        """Stop the proxy process this data dir started."""
        ...

    def report(self, ctx: Context) -> dict[str, Any]:
        ...
