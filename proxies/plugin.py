"""The built-in proxies and their commands, registered through pushdock's own hooks.

Cheap to import: the proxies and the command modules load when the registry or the CLI needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pushdock.specs import hookimpl

if TYPE_CHECKING:
    from collections.abc import Callable

    import click

    from pushdock.context import Context


# What the hooks below import lazily: serve's zygote imports it once (pushdock/zygote.py, bus.warm_builtins).
WARM = (
    "proxies.commands", "proxies.engine", "proxies.batch", "proxies.certs", "proxies.caddy.proxy",
    "proxies.nginx.proxy", "proxies.traefik.proxy",
)


@hookimpl
def register_proxies() -> dict[str, Any]:
    from proxies.caddy.proxy import CaddyProxy  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs
    from proxies.nginx.proxy import NginxProxy  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs
    from proxies.traefik.proxy import TraefikProxy  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return {p.name: p for p in (NginxProxy(), CaddyProxy(), TraefikProxy())}


@hookimpl
def timer_jobs(ctx: Context) -> dict[str, tuple[str, Callable[[], object]]]:
    from proxies.letsencrypt.service import scheduled_renewal  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    return {"letsencrypt:renew": ("@daily", scheduled_renewal(ctx))}


@hookimpl
def register_commands(cli: click.Group) -> None:
    from proxies.commands import COMMANDS  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    for cmd in COMMANDS:
        cli.add_command(cmd)


@hookimpl
def app_summary(ctx: Context, app: str) -> dict[str, str]:
    """The certificate's expiry, for the dashboard's list of apps (one small file read)."""
    from proxies import certs  # noqa: PLC0415 -- start-up: every CLI start loads the plugins; this loads when the hook runs

    meta = certs.info(ctx, app)
    return {"certificate expires": certs.day(meta.not_after)} if meta is not None else {}
