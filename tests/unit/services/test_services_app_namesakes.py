"""An app named like a service: destroying, renaming or cloning the app leaves the service's record, credentials,
links and backup settings as they were (they were under data/service-KIND/NAME, which data/*/APP matched)."""

from __future__ import annotations

import os

import pytest

from pushdock.errors import UsageError
from pushdock.state import State
from services import model

KINDS = ["postgres", "redis"]


def service_named(ctx, kind: str, name: str) -> tuple[model.Service, str, dict]:
    """A service NAME of KIND linked to another app, with a backup schedule; and an app NAME with settings."""
    service, password = model.create(ctx.state, kind, name)
    service = model.Service(kind, name, service.created, (model.Link("web", "DATABASE_URL"),))
    model.save(ctx.state, service)
    model.records(ctx.state, kind).set_json(name, "backup-schedule", {"cron": "0 3 * * *", "keep": 7})
    ctx.state.create_app(name)
    ctx.state.set_env(name, {"A": "1"})
    ctx.state.set("domains", name, "x", "1")
    return service, password, snapshot(ctx.state, kind, name)


def snapshot(state: State, kind: str, name: str) -> dict:
    records = model.records(state, kind)
    return {prop: records.get(name, prop) for prop in ("record", "credentials", "backup-schedule")}


def assert_intact(ctx, service: model.Service, password: str, before: dict) -> None:
    kind, name = service.kind, service.name
    assert model.get(ctx.state, kind, name) == service  # links included
    assert model.password(ctx.state, service) == password
    assert snapshot(ctx.state, kind, name) == before
    path = ctx.state.path("services", kind, name, "credentials")
    assert os.stat(path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("kind", KINDS)
def test_destroying_an_app_named_like_a_service_keeps_the_service(ctx, kind: str) -> None:
    service, password, before = service_named(ctx, kind, "shop")
    ctx.state.destroy_app("shop")
    assert not ctx.state.app_exists("shop") and ctx.state.get("domains", "shop", "x") is None
    assert_intact(ctx, service, password, before)
    assert [s.name for s in model.all_of(ctx.state, kind)] == ["shop"]


@pytest.mark.parametrize("kind", KINDS)
def test_renaming_an_app_named_like_a_service_neither_moves_nor_copies_the_service(ctx, kind: str) -> None:
    service, password, before = service_named(ctx, kind, "shop")
    ctx.state.rename_app("shop", "store")
    assert ctx.state.get_env("store") == {"A": "1"} and ctx.state.get("domains", "store", "x") == "1"
    assert_intact(ctx, service, password, before)
    assert model.find(ctx.state, kind, "store") is None
    assert [s.name for s in model.all_of(ctx.state, kind)] == ["shop"]


@pytest.mark.parametrize("kind", KINDS)
def test_cloning_an_app_named_like_a_service_makes_no_second_record(ctx, kind: str) -> None:
    service, password, before = service_named(ctx, kind, "shop")
    ctx.state.clone_app("shop", "shop-copy", skip=frozenset())
    assert ctx.state.get_env("shop-copy") == {"A": "1"}
    assert_intact(ctx, service, password, before)
    assert model.find(ctx.state, kind, "shop-copy") is None  # no record, no credentials of the parent's database
    assert [s.name for s in model.all_of(ctx.state, kind)] == ["shop"]
    ctx.state.destroy_app("shop-copy")
    ctx.state.destroy_app("shop")
    assert_intact(ctx, service, password, before)


def test_a_service_named_like_an_app_is_destroyed_alone(ctx) -> None:
    """The other way round: forgetting a service leaves the app of the same name and its settings."""
    service, _, _ = service_named(ctx, "postgres", "shop")
    model.forget(ctx.state, service)
    assert model.find(ctx.state, "postgres", "shop") is None
    assert ctx.state.app_exists("shop") and ctx.state.get_env("shop") == {"A": "1"}


@pytest.mark.parametrize("name", ["--global", "../x", "Bad", "", "a/b"])
def test_record_names_kinds_and_properties_are_checked(ctx, name: str) -> None:
    with pytest.raises(UsageError):
        model.records(ctx.state, "postgres").set(name, "record", "{}")
    with pytest.raises(UsageError):
        ctx.state.service_records(name)
    with pytest.raises(UsageError):
        model.records(ctx.state, "postgres").set("db", {"--global": "..", "Bad": ".x"}.get(name, name), "{}")
    assert not ctx.state.path("services").exists()
