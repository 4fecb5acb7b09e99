"""docker-local's pure parts: names, labels, env, commands, slots, plans, what it reads from inspect data.

Containers are small fakes carrying the inspect data the engine would return; the real engine is
exercised in tests/e2e/test_docker_local.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pushdock.context import Context
from pushdock.errors import PushdockError
from pushdock.routing import Upstream
from pushdock.settings import Settings
from pushdock.state import Release
from schedulers import engine as eng
from schedulers.docker_local.scheduler import _plan
from schedulers.engine import Slot


@dataclass
class FakeContainer:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = "c"
    status: str = "running"


def running(cid: str, process: str, index: int, release: int = 1, *, created: str = "1",
            status: str = "running", restarts: int = 0, port: int | None = None) -> FakeContainer:
    ports = {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]} if port else {}
    return FakeContainer(
        id=cid,
        name=f"a.{process}.{index}.v{release}.{cid}",
        labels={eng.LABEL_APP: "a", eng.LABEL_PROCESS: process, eng.LABEL_INDEX: str(index),
                eng.LABEL_RELEASE: str(release)},
        attrs={"Created": created, "State": {"Status": status, "ExitCode": 0 if status == "running" else 3},
               "RestartCount": restarts, "NetworkSettings": {"Ports": ports}},
    )


def release(**kw: Any) -> Release:
    base = dict(app="hello", number=3, image="img", env={"A": "1"}, processes={"web": "", "worker": "w.sh"},
                formation={"web": 2, "worker": 1})
    return Release(**(base | kw))


def test_slots_put_web_first_and_skip_zero():
    assert eng.slots({"worker": 2, "web": 1, "clock": 0}) == [Slot("web", 1), Slot("worker", 1), Slot("worker", 2)]
    assert eng.slots({}) == []
    assert str(Slot("web", 2)) == "web.2"


def test_container_name_is_docker_safe_and_unique():
    names = {eng.container_name("my-app", Slot("web_x", 12), 7) for _ in range(50)}
    assert len(names) > 40
    for n in names:
        assert re.fullmatch(r"my-app\.web_x\.12\.v7\.[0-9a-f]{4}", n)
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", n)


def test_env_adds_port_dyno_release():
    env = eng.container_env(release(), Slot("web", 2))
    assert env == {"A": "1", "PORT": "5000", "DYNO": "web.2", "PUSHDOCK_RELEASE": "v3",
                   "TINI_KILL_PROCESS_GROUP": "1"}
    assert eng.container_env(release(env={"PORT": "8080"}), Slot("worker", 1))["PORT"] == "8080"
    assert eng.container_env(release(web_port=3000, env={}), Slot("web", 1))["PORT"] == "3000"


@pytest.mark.parametrize("bad", ["abc", "0", "70000", ""])
def test_bad_port_is_a_user_error(bad: str):
    with pytest.raises(PushdockError, match="PORT must be a TCP port"):
        eng.container_port(release(env={"PORT": bad}))


def test_scaled_process_types_need_a_command():
    eng.check_formation(release(formation={"web": 1, "worker": 2, "clock": 0}))
    eng.check_formation(release(processes={}, formation={"web": 1}))  # the image's own CMD
    with pytest.raises(PushdockError, match="v3 has no process type 'clock' \\(it has: web, worker\\)"):
        eng.check_formation(release(formation={"clock": 1}))


def test_command_runs_procfile_text_through_sh_or_image_cmd():
    r = release()
    assert eng.container_command(r, "worker") == ["/bin/sh", "-c", "exec w.sh"]
    assert eng.container_command(r, "worker", ("/entry.sh",)) == ["w.sh"]  # the app's ENTRYPOINT gets the words
    assert eng.container_command(r, "web") is None
    assert eng.container_command(r, "other") is None


def test_labels_scope_to_the_data_dir(tmp_path: Path):
    ctx = Context(settings=Settings(data_dir=tmp_path))
    labels = eng.container_labels(ctx, release(), Slot("worker", 1))
    assert labels == {"pushdock.app": "hello", "pushdock.process": "worker", "pushdock.release": "3",
                      "pushdock.index": "1", "pushdock.data-dir": str(tmp_path)}
    assert eng.app_filters(ctx, "hello", process="web") == {
        "label": ["pushdock.app=hello", f"pushdock.data-dir={tmp_path}", "pushdock.process=web"]
    }


def test_upstream_from_live_then_configured_bindings():
    assert eng.upstream_of(running("x", "web", 1, port=32001)) == Upstream("127.0.0.1", 32001)
    stopped = running("y", "web", 1, status="exited")
    stopped.attrs["HostConfig"] = {"PortBindings": {"5000/tcp": [{"HostIp": "", "HostPort": "32002"}]}}
    assert eng.upstream_of(stopped) == Upstream("127.0.0.1", 32002)
    assert eng.upstream_of(running("z", "worker", 1)) is None


def test_instance_and_exit_reason():
    c = running("x", "web", 2, release=4, port=32001, restarts=1)
    inst = eng.instance_of(c)
    assert inst is not None
    assert (inst.process, inst.index, inst.release, inst.restarts, inst.upstream) == (
        "web", 2, 4, 1, Upstream("127.0.0.1", 32001))
    assert eng.exit_reason(c) == "crashed and was restarted 1x"
    assert eng.exit_reason(running("y", "web", 1)) is None
    assert eng.exit_reason(running("z", "web", 1, status="exited")) == "exited with status 3"
    assert eng.exit_reason(running("z", "web", 1, status="restarting")) == "exited with status 3, restarting"
    assert eng.exit_reason(running("z", "web", 1, status="created")) == "is created"
    assert eng.instance_of(FakeContainer(id="n", labels={"pushdock.app": "a"})) is None


def test_port_taken_messages():
    assert eng.port_taken(Exception("Bind for 127.0.0.1:5 failed: port is already allocated"))
    assert eng.port_taken(Exception("listen tcp4 127.0.0.1:5: bind: address already in use"))
    assert not eng.port_taken(Exception("No such image"))


def test_free_port_is_bindable():
    import socket

    port = eng.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_plan_keeps_running_revives_stopped_creates_missing_removes_extras():
    web1_old = running("w1old", "web", 1, created="1", status="exited")
    web1 = running("w1", "web", 1, created="2")
    web2 = running("w2", "web", 2, status="exited")
    web3 = running("w3", "web", 3)
    clock = running("c1", "clock", 1)
    keep, revive, missing, extras = _plan([web1_old, web1, web2, web3, clock], eng.slots({"web": 2, "worker": 1}))
    assert keep == {Slot("web", 1): web1}
    assert revive == [(Slot("web", 2), web2)]
    assert missing == [Slot("worker", 1)]
    assert {c.id for c in extras} == {"w1old", "w3", "c1"}
