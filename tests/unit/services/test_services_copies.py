"""A preview's services (services/copies.py) without the engine: which backup a clone restores, the names the
copies get, and that `clone-app-services` with nothing linked makes nothing."""

from __future__ import annotations

import time

import pytest

from pushdock.context import Context
from pushdock.errors import PushdockError, UsageError
from services import backups, copies, model


def test_a_clone_takes_the_newest_verified_backup(ctx: Context) -> None:
    service, _ = model.create(ctx.state, "postgres", "db")
    with pytest.raises(PushdockError, match=r"has no verified backup to clone \(run postgres:backup db --verify\)"):
        copies.newest_verified(ctx, service)
    folder = backups.directory(ctx, service)
    folder.mkdir(parents=True)
    now = time.time()
    for i, (file, verified) in enumerate([("old.dump", "yes"), ("newer.dump", "yes"), ("newest.dump", "no"),
                                           ("broken.dump", "failed: table x differs")]):
        (folder / file).write_bytes(b"PGDMP")
        backups._record(ctx, service, backups.Backup(file, folder / file, 5, now + i, verified))
    assert copies.newest_verified(ctx, service).file == "newer.dump"


def test_copies_are_named_after_the_app(ctx: Context) -> None:
    assert copies._free_name(ctx, "postgres", "site-pr-1") == "site-pr-1-postgres"
    model.create(ctx.state, "postgres", "site-pr-1-postgres")
    assert copies._free_name(ctx, "postgres", "site-pr-1") == "site-pr-1-postgres-2"
    assert copies._free_name(ctx, "redis", "site-pr-1") == "site-pr-1-redis"
    assert len(copies._free_name(ctx, "postgres", "a" * 63)) == 63


def test_nothing_linked_nothing_made(ctx: Context) -> None:
    ctx.state.create_app("site")
    assert ctx.bus.call("clone_app_services", ctx=ctx, source_app="site", app="site-pr-1", data="clone") == [[]]
    with pytest.raises(UsageError, match="data must be one of empty, clone"):
        copies.clone_for(ctx, ctx.bus.registry("services"), "site", "site-pr-1", "all")
    ctx.bus.call("destroy_app_services", ctx=ctx, services=["postgres:nosuch"])  # gone already: nothing to do


def test_a_copy_says_which_app_it_was_made_for(ctx: Context) -> None:
    """Written with the record, before the service runs: `app-copy-services` finds a copy its maker never
    returned (a worker killed half-way); services made by users are never listed."""
    model.create(ctx.state, "postgres", "site-pr-1-postgres", made_for="site-pr-1")
    model.create(ctx.state, "redis", "site-pr-1-redis", made_for="site-pr-1")
    model.create(ctx.state, "postgres", "site-pr-2-postgres", made_for="site-pr-2")
    model.create(ctx.state, "postgres", "site-pr-1-mine")
    assert model.get(ctx.state, "postgres", "site-pr-1-postgres").made_for == "site-pr-1"
    assert model.get(ctx.state, "postgres", "site-pr-1-mine").made_for is None
    assert ctx.bus.call("app_copy_services", ctx=ctx, app="site-pr-1") == [
        ["postgres:site-pr-1-postgres", "redis:site-pr-1-redis"]]
    assert ctx.bus.call("app_copy_services", ctx=ctx, app="site") == [[]]
