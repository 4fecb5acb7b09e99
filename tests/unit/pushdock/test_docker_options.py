"""docker-options: an option as a Dokku user writes it becomes engine API fields, or one `error:` line."""

from __future__ import annotations

import pytest

from pushdock import docker_options
from pushdock.context import Context
from pushdock.errors import Forbidden, UsageError
from pushdock.state import Identity


@pytest.mark.parametrize(("text", "host", "labels"), [
    ("--shm-size 128m", {"shm_size": 128 << 20}, {}),
    ("--shm-size=1g", {"shm_size": 1 << 30}, {}),
    ("--ulimit nofile=1024:2048", {"ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}]}, {}),
    ("--cap-add NET_BIND_SERVICE --cap-drop=CAP_CHOWN", {"cap_add": ["NET_BIND_SERVICE"], "cap_drop": ["CHOWN"]}, {}),
    ("--add-host db.internal:10.0.0.5", {"extra_hosts": {"db.internal": "10.0.0.5"}}, {}),
    ("--label team=payments", {}, {"team": "payments"}),
    ("--init", {"init": True}, {}),
    ("--tmpfs /scratch:size=64m", {"tmpfs": {"/scratch": "size=64m"}}, {}),
    ("--dns 1.1.1.1", {"dns": ["1.1.1.1"]}, {}),
])
def test_options_become_engine_fields(text: str, host: dict, labels: dict) -> None:
    option = docker_options.parse(text)
    merged: dict = {}
    got: dict = {}
    for flag in option.flags:
        merged |= flag.labels
        got |= flag.host
    assert (got, merged, option.admin) == (host, labels, [])


@pytest.mark.parametrize(("text", "reason"), [
    ("--privileged", "whole host"), ("--pid=host", "namespace"), ("--network host", "network stack"),
    ("--ipc=host", "namespace"), ("--userns=host", "namespace"), ("--cap-add ALL", "power over the host"),
    ("--cap-add sys_admin", "power over the host"), ("--device /dev/fuse", "hardware"),
    ("-v /var/run/docker.sock:/var/run/docker.sock", "host's files"), ("--security-opt seccomp=unconfined",
                                                                       "confinement"),
])
def test_dangerous_options_are_admin_only(ctx: Context, text: str, reason: str) -> None:
    option = docker_options.parse(text)
    assert option.admin and reason in option.admin[0]
    assert docker_options.authorize(ctx, [option]) == option.admin  # an admin: accepted, flagged
    deployer = Context(ctx.settings, identity=Identity(name="dev", role="deployer", door="ssh"))
    with pytest.raises(Forbidden, match="admin only"):
        docker_options.authorize(deployer, [option])


@pytest.mark.parametrize(("text", "reason"), [
    ("--memory 1g", "resource:limit"), ("--restart always", "restart-policy"), ("--network mynet", "network:set"),
    ("-e A=b", "config:set"), ("--frobnicate", "unsupported option"), ("echo hi", "not an option"),
    ("--shm-size", "needs a value"), ("--shm-size lots", "a size"), ("--label pushdock.app=x", "reserved"),
    ("--ulimit nofile", "NAME=SOFT"), ("--add-host nope", "HOST:IP"), ("-v relative:/x", "storage:mount"),
    ("--init=yes", "unsupported option"), ("'unclosed", "cannot read"), ("", "give an option"),
])
def test_bad_options_are_one_line(text: str, reason: str) -> None:
    with pytest.raises(UsageError) as e:
        docker_options.parse(text)
    assert reason in e.value.message and "\n" not in e.value.message


def test_phases_are_comma_separated() -> None:
    assert docker_options.parse_phases("deploy,run,deploy") == ["deploy", "run"]
    with pytest.raises(UsageError, match="unknown phase 'nope'"):
        docker_options.parse_phases("deploy,nope")


def test_stored_options_merge_per_phase(ctx: Context) -> None:
    ctx.state.create_app("app")
    docker_options.store(ctx.state, "app", {"deploy": ["--cap-add NET_RAW", "--cap-add NET_BIND_SERVICE",
                                                       "--shm-size 64m", "--label a=1"], "run": []})
    applied = docker_options.for_phase(ctx.state, "app", "deploy")
    assert applied.host == {"cap_add": ["NET_RAW", "NET_BIND_SERVICE"], "shm_size": 64 << 20}
    assert docker_options.host_config(applied, {"init": True, "binds": ["/a:/b:rw"]})["shm_size"] == 64 << 20
    kw, ignored = applied.build_api()
    assert kw == {"shm_size": 64 << 20, "labels": {"a": "1"}} and ignored == ["cap_add"]
    assert docker_options.for_phase(ctx.state, "app", "run").host == {}
    assert docker_options.stored(ctx.state, "app") == {"deploy": ["--cap-add NET_RAW", "--cap-add NET_BIND_SERVICE",
                                                                  "--shm-size 64m", "--label a=1"]}


def test_swarm_tasks_take_what_their_container_spec_has_and_name_the_rest(ctx: Context) -> None:
    """The swarm mapping, checked against docker's own ContainerSpec (no swarm here: the e2e swarm tests need an
    engine of their own)."""
    from docker.types import ContainerSpec

    ctx.state.create_app("app")
    docker_options.store(ctx.state, "app", {"deploy": ["--cap-add NET_RAW", "--add-host db:10.0.0.5", "--dns 1.1.1.1",
                                                       "--label team=a", "--shm-size 64m", "--privileged"]})
    kw, labels, ignored = docker_options.swarm_spec(docker_options.for_phase(ctx.state, "app", "deploy"))
    spec = ContainerSpec("img", labels=labels, **kw)
    assert spec["CapabilityAdd"] == ["NET_RAW"] and spec["Hosts"] == ["10.0.0.5 db"]
    assert spec["DNSConfig"]["Nameservers"] == ["1.1.1.1"] and spec["Labels"] == {"team": "a"}
    assert ignored == ["privileged", "shm_size"]


def test_every_mapped_option_is_a_field_the_engine_api_takes(ctx: Context) -> None:
    """Each option, as merged for a phase, goes through docker's own create_host_config (no engine needed)."""
    from docker.api.client import APIClient

    api = APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    every = ["--shm-size 64m", "--ulimit nofile=1024:2048", "--cap-add NET_RAW", "--cap-drop CHOWN",
             "-v /srv/x:/x:ro", "--add-host db:10.0.0.5", "--device /dev/fuse", "--init", "--read-only",
             "--privileged", "--log-driver local", "--log-opt max-size=10m", "--dns 1.1.1.1", "--dns-search corp",
             "--dns-option ndots:1", "--tmpfs /scratch:size=64m", "--pids-limit 100", "--security-opt no-new-privileges",
             "--sysctl net.core.somaxconn=1024", "--ipc=private", "--pid=host", "--userns=host"]
    ctx.state.create_app("app")
    docker_options.store(ctx.state, "app", {"deploy": every})
    applied = docker_options.for_phase(ctx.state, "app", "deploy")
    config = api.create_host_config(**docker_options.host_config(applied, {"init": True, "binds": ["/a:/b:rw"]}))
    assert config["ShmSize"] == 64 << 20 and config["Binds"] == ["/a:/b:rw", "/srv/x:/x:ro"]
    assert config["Ulimits"][0]["Name"] == "nofile" and config["LogConfig"] == {"Type": "local",
                                                                                "Config": {"max-size": "10m"}}
    assert config["Privileged"] and config["PidMode"] == "host" and config["Tmpfs"] == {"/scratch": "size=64m"}
