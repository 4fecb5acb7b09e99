"""scheduler-swarm:set constraints, swarm:registry and swarm:join-token's checks through the real command edge;
which engine events wake serve's follower. No engine: these fail or succeed before one is asked."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import schedulers.plugin
from pushdock.bus import Bus
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.settings import Settings
from schedulers.swarm import settings as props
from schedulers.swarm.events import moves

APP = "shop"


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    settings = Settings(data_dir=tmp_path / "data")
    bus = Bus(settings.data_dir / "plugins", extra_plugins=(schedulers.plugin,), entry_points=False)
    return Context(settings=settings, bus_override=bus)


def run(ctx: Context, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = dispatch(list(argv), ctx, out, err)
    return rc, out.getvalue(), err.getvalue()


def test_constraints_per_process_type_are_stored_checked_and_reported(ctx: Context) -> None:
    ctx.state.create_app(APP)
    assert run(ctx, "scheduler-swarm:set", APP, "constraints", "web", "node.role==worker", "node.labels.zone!=b") == (
        0, "-----> shop web: constraints node.role==worker node.labels.zone!=b (from the next deploy)\n", "")
    assert props.constraints(ctx, APP, "web") == ["node.role==worker", "node.labels.zone!=b"]
    assert props.constraints(ctx, APP, "worker") == []
    rc, out, _ = run(ctx, "scheduler-swarm:report", APP, "--format", "json")
    assert rc == 0 and json.loads(out) == {"web": "node.role==worker node.labels.zone!=b"}

    for bad in ("node.role=worker", "role==worker", "node.role==$(id)", "node.role == "):
        rc, out, err = run(ctx, "scheduler-swarm:set", APP, "constraints", "web", bad)
        assert rc != 0 and err.startswith("error: a constraint must look like") and err.count("\n") == 1
    assert props.constraints(ctx, APP, "web") == ["node.role==worker", "node.labels.zone!=b"], "nothing half-applied"
    rc, _, err = run(ctx, "scheduler-swarm:set", APP, "constraints", "Web!", "node.role==worker")
    assert rc != 0 and err.startswith("error: process type must look like")
    rc, _, err = run(ctx, "scheduler-swarm:set", APP, "limits", "web")
    assert rc != 0 and err.startswith("error: usage: scheduler-swarm:set APP constraints PROCESS")

    assert run(ctx, "scheduler-swarm:set", APP, "constraints", "web")[0] == 0
    assert props.constraints(ctx, APP, "web") == [] and ctx.state.get("scheduler", APP, "constraints") is None


def test_swarm_registry_sets_the_global_registry(ctx: Context) -> None:
    assert run(ctx, "swarm:registry", "set", "10.0.0.5:5000") == (0, "-----> swarm registry 10.0.0.5:5000\n", "")
    assert props.registry_server(ctx, APP) == "10.0.0.5:5000"
    rc, out, _ = run(ctx, "swarm:registry", "report", "--format", "json")
    assert json.loads(out) == {"server": "10.0.0.5:5000"}
    rc, _, err = run(ctx, "swarm:registry", "set", "not a host")
    assert rc != 0 and err.startswith("error: registry server must look like") and props.registry_server(ctx)
    rc, _, err = run(ctx, "swarm:registry", "push", "x")
    assert rc != 0 and err.startswith("error: usage: swarm:registry set [URL]")
    assert run(ctx, "swarm:registry", "set")[0] == 0 and props.registry_server(ctx) is None


def test_join_token_role_is_checked_before_the_engine_is_asked(ctx: Context) -> None:
    rc, _, err = run(ctx, "swarm:join-token", "admin")
    assert rc != 0 and err == "error: role must be one of worker, manager, not 'admin'\n"


@pytest.mark.parametrize(("event", "wakes"), [
    ({"Type": "node", "Action": "update", "Actor": {"ID": "n1", "Attributes": {"state.new": "down"}}}, True),
    ({"Type": "service", "Action": "update", "Actor": {"Attributes": {"name": "shop-web-v3"}}}, True),
    ({"Type": "container", "Action": "start", "Actor": {"Attributes": {"com.docker.swarm.service.id": "s"}}}, True),
    ({"Type": "container", "Action": "health_status: healthy",
      "Actor": {"Attributes": {"com.docker.swarm.service.id": "s"}}}, True),
    ({"Type": "container", "Action": "start", "Actor": {"Attributes": {"pushdock.app": "plain"}}}, False),
    ({"Type": "container", "Action": "exec_start: sh", "Actor": {"Attributes": {"com.docker.swarm.service.id": "s"}}},
     False),
    ({"Type": "network", "Action": "connect"}, False),
])
def test_which_engine_events_wake_the_follower(event: dict, wakes: bool) -> None:
    assert moves(event) is wakes
