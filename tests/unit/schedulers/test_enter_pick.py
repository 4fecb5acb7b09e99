"""Which running container `enter` goes into, and what `ps:inspect` shows of the environment."""

from __future__ import annotations

import pytest

from pushdock.commands.ps import mask_env
from pushdock.errors import PushdockError
from pushdock.scheduler import Instance
from schedulers.docker_local.run import pick_instance


def inst(process: str, index: int, release: int = 2, state: str = "running", cid: str = "") -> Instance:
    cid = cid or f"{process}{index}{release}".ljust(64, "0")
    return Instance(app="a", process=process, index=index, release=release, id=cid,
                    name=f"a.{process}.{index}.v{release}", state=state)


def test_picks_the_first_running_instance_of_the_newest_release() -> None:
    found = [inst("web", 2), inst("web", 1, release=1), inst("web", 1), inst("worker", 1, state="exited")]
    assert pick_instance(found, "a", process="web", container_id=None) == found[2]
    assert pick_instance(found, "a", process="web.2", container_id=None) == found[0]
    assert pick_instance(found, "a", process=None, container_id=None).process == "web"  # the only one running
    assert pick_instance(found, "a", process=None, container_id="a.web.2.v2") == found[0]
    assert pick_instance(found, "a", process=None, container_id=found[1].id[:12]) == found[1]


@pytest.mark.parametrize(("process", "container_id", "message"), [
    ("worker", None, "a has no running worker container (running: web)"),
    ("web.7", None, "a has no running web.7 container"),
    (None, "web", "a has no running container 'web'"),  # short id prefixes do not match: 12 characters at least
])
def test_refuses_what_is_not_running(process, container_id, message) -> None:
    found = [inst("web", 1), inst("worker", 1, state="exited")]
    with pytest.raises(PushdockError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pick_instance(found, "a", process=process, container_id=container_id)


def test_asks_which_when_several_types_run() -> None:
    with pytest.raises(PushdockError, match="a runs web, worker: say which"):
        pick_instance([inst("web", 1), inst("worker", 1)], "a", process=None, container_id=None)
    with pytest.raises(PushdockError, match="a has no running container"):
        pick_instance([], "a", process=None, container_id=None)


def test_inspect_masks_config_values_only() -> None:
    out = mask_env([{"Config": {"Env": ["SECRET=hunter2", "PORT=5000", "EMPTY="]}}, {"Config": None}], {"SECRET"})
    assert out[0]["Config"]["Env"] == ["SECRET=***", "PORT=5000", "EMPTY="]
