"""The command registry: Dokku-style names, one-line errors, exit codes, roles; no Docker needed
(apps are never deployed here, so config changes are stored without a restart)."""

from __future__ import annotations

import io
import json

import pytest

import hooks.plugin
from pushdock.bus import Bus
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.state import Identity


@pytest.fixture
def core_ctx(settings) -> Context:
    bus = Bus(settings.data_dir / "plugins", extra_plugins=(hooks.plugin,), entry_points=False)
    return Context(settings=settings, bus_override=bus)


def run(ctx: Context, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = dispatch(list(argv), ctx, out, err)
    return rc, out.getvalue(), err.getvalue()


def test_colon_and_space_forms(core_ctx) -> None:
    assert run(core_ctx, "apps:create", "web")[0] == 0
    assert run(core_ctx, "apps", "create", "api")[0] == 0
    rc, out, _ = run(core_ctx, "apps:list", "--format", "json")
    assert rc == 0 and [a["name"] for a in json.loads(out)] == ["api", "web"]
    rc, out, _ = run(core_ctx, "apps")
    assert "web" in out


@pytest.mark.parametrize("name", ["../x", "A B", "a" * 64])
def test_bad_app_name_one_line_error(core_ctx, name) -> None:
    rc, out, err = run(core_ctx, "apps:create", name)
    assert rc != 0 and out == ""
    assert err.startswith("error: invalid app name") and err.count("\n") == 1
    assert core_ctx.state.list_apps() == []


def test_config_set_validation_applies_nothing(core_ctx) -> None:
    run(core_ctx, "apps:create", "web")
    run(core_ctx, "config:set", "web", "A=1")
    for bad in (["B=2", "1X=y"], ["B=2", "novalue"]):
        rc, _, err = run(core_ctx, "config:set", "web", *bad)
        assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert core_ctx.state.get_env("web") == {"A": "1"}


def test_config_roundtrip_and_export(core_ctx) -> None:
    run(core_ctx, "apps:create", "web")
    rc, out, _ = run(core_ctx, "config:set", "web", "A=1", "MSG=hello world", "EQ=a=b")
    assert rc == 0 and "hello world" not in out  # values are never echoed
    assert run(core_ctx, "config:get", "web", "EQ")[1] == "a=b\n"
    assert json.loads(run(core_ctx, "config:export", "web", "--format", "json")[1])["MSG"] == "hello world"
    assert "export MSG='hello world'" in run(core_ctx, "config:export", "web")[1]
    assert run(core_ctx, "config:unset", "web", "A")[0] == 0
    rc, _, err = run(core_ctx, "config:unset", "web", "A")
    assert rc == 1 and "no config key A" in err


def test_unknown_command_and_app(core_ctx) -> None:
    rc, _, err = run(core_ctx, "nope:verb")
    assert rc != 0 and err.startswith("error: ")
    rc, _, err = run(core_ctx, "config:show", "ghost")
    assert rc == 1 and err == "error: app ghost does not exist\n"


def test_deployer_is_confined_to_its_apps(settings) -> None:
    bus = Bus(settings.data_dir / "plugins", extra_plugins=(hooks.plugin,), entry_points=False)
    admin = Context(settings=settings, bus_override=bus)
    run(admin, "apps:create", "mine")
    run(admin, "apps:create", "theirs")
    dep = Context(settings=settings, bus_override=bus,
                  identity=Identity(name="ci", role="deployer", apps=("mine",), door="ssh"))
    assert run(dep, "config:set", "mine", "A=1")[0] == 0
    rc, _, err = run(dep, "config:set", "theirs", "A=1")
    assert rc == 13 and "no access to app theirs" in err
    rc, _, err = run(dep, "apps:destroy", "mine", "--force")
    assert rc == 13 and "admin only" in err
    assert run(dep, "apps:list")[1].split() == ["=====>", "My", "Apps", "mine"]


def test_events_record_commands(core_ctx) -> None:
    run(core_ctx, "apps:create", "web")
    run(core_ctx, "apps:create", "BAD")
    rc, out, _ = run(core_ctx, "events", "--format", "json")
    rows = json.loads(out)
    assert [(r["action"], r["result"]) for r in rows] == [("apps:create", "ok"), ("apps:create", "exit 2")]


def test_help_lists_colon_names(core_ctx) -> None:
    rc, out, _ = run(core_ctx, "help")
    assert rc == 0 and "config:set" in out and "apps:destroy" in out
