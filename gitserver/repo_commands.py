"""repo:gc APP and repo:purge-cache APP — housekeeping of an app's bare repository and build caches."""

from __future__ import annotations

import click

from gitserver import housekeeping
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
    before, after = housekeeping.gc(ctx, app)
    click.echo(f"=====> {app}: repository {_mib(before)} -> {_mib(after)}")


@repo.command("purge-cache")
@click.argument("app")
@click.pass_obj
def purge_cache(ctx: Context, app: str) -> None:
    """Empty the app's build caches: its next build starts from scratch."""
    authorized_app(ctx, app)
    purged = housekeeping.purge_caches(ctx, app)
    click.echo(f"=====> {app}: purged {', '.join(purged) if purged else 'nothing (no build cache)'}")


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.2f} MiB"
