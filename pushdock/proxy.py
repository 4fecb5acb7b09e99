"""What a proxy is: something that routes an app's domains to its web upstreams.

nginx, caddy and traefik implement it on top of proxies/engine.py (validation, group commit, the
table of live routes); a third-party proxy may implement it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
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
        """Route `domains` to `upstreams` (with the app's ports, certificate and redirect from state);
        return only when the new routing is live and the old drained. No upstreams: the domains answer 503.
        A bad domain or upstream, or a domain or port another app holds, raises before anything changes."""
        ...

    def remove(self, ctx: Context, app: str) -> None:
        """Stop routing the app."""
        ...

    def batch(self, ctx: Context) -> AbstractContextManager[None]:
        """Inside it, `apply`/`remove` return at once; all of them are committed together (one reload) at exit."""
        ...

    def routes(self, ctx: Context) -> Mapping[str, Any]:
        """What the proxy was last told to serve, by app (the shipped proxies: proxies.model.Route)."""
        ...

    def check_ports(self, ctx: Context, ports: list[int]) -> None:
        """Conflict if another program holds one of these host ports (one this proxy listens on is fine)."""
        ...

    def stop(self, ctx: Context) -> None:
        """Stop the proxy process this data dir started."""
        ...

    def serving(self, ctx: Context) -> bool:
        """Whether a process of this proxy serves the routes now."""
        ...

    def pids(self, ctx: Context) -> list[int]:
        """The running processes holding this proxy's listening sockets ([]: unknown; a switch then leaves the
        hand-over of new connections to the kernel)."""
        ...

    def report(self, ctx: Context) -> dict[str, Any]:
        """State of the proxy process: running, pid, ports, apps, where its files are."""
        ...

    def describe(self, ctx: Context, app: str) -> dict[str, str]:
        """Where the app's routes live in this proxy (a file, caddy @ids), for `proxy:report APP`."""
        ...
