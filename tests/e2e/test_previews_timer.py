"""What `pushdock serve`'s timer does to previews, end to end (real serve, Docker, nginx; GitHub is the local
stand-in of tests/fakes/github.py): a preview whose worker was killed mid-deploy is deployed by a new worker at the
next minute tick, and a preview past its ttl is destroyed. The tests wait for the timer's minute ticks, so they
run in the parallel pass (no load is counted here; tests/e2e/test_previews.py has the zero-downtime one)."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import docker
import pytest

from tests.fakes.github import deliver, listed, open_pr, parent_app, pr_payload, serving, wait_gone, wait_state
from tests.harness import Server

pytestmark = pytest.mark.docker
SECRET = uuid.uuid4().hex
TOKEN = "ghp_" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("previews-timer")).start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def github(server):
    with serving(server) as fake:
        yield fake


@pytest.fixture(scope="module")
def parent(server, github):
    """A deployed parent app with a secret, webhook and previews set; (app, work tree)."""
    return parent_app(server, github, "tick", "API_TOKEN=parent-only", secret=SECRET, token=TOKEN)

def containers(server: Server, app: str) -> list:  # type: ignore[type-arg]
    return docker.from_env().containers.list(all=True, filters={"label": [f"pushdock.app={app}",
                                                                          f"pushdock.data-dir={server.data}"]})


def preview_workers(server: Server, pr: int) -> list[int]:
    """Pids of the `python -m previews.deploy` workers of this server's data dir deploying pull request `pr`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            env = dict(v.split(b"=", 1) for v in open(f"/proc/{entry}/environ", "rb").read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        job = json.loads(env.get(b"PUSHDOCK_PREVIEW_JOB", b"{}"))
        if b"previews.deploy" in argv and env.get(b"PUSHDOCK_DATA_DIR") == str(server.data).encode() and \
                job.get("pr") == pr and job.get("action") == "deploy":
            found.append(int(entry))
    return found


def test_a_deploy_whose_worker_was_killed_is_deployed_again_by_the_timer(server, github, parent) -> None:
    """The preview's worker is killed (SIGKILL, its whole process group: as a reboot or the OOM killer would)
    while deploying: the record stays `deploying` with nobody on its lock, and serve's every-minute job starts a
    new worker, which makes the preview again if it was half made and deploys the head."""
    app, work = parent
    preview = f"{app}-pr-4"
    head = open_pr(server, work, 4, "deployed after all")
    records = server.data / "data" / "previews" / app / "records"
    assert deliver(server, app, pr_payload(github, "opened", 4, head), secret=SECRET)[0] == 202
    deadline = time.monotonic() + 60
    while json.loads(records.read_text()).get("4", {}).get("state") != "deploying":
        assert time.monotonic() < deadline, records.read_text()
        time.sleep(0.02)
    [pid] = preview_workers(server, 4)
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30  # SIGKILL is delivered at once, the process is gone when the kernel is done
    while preview_workers(server, 4):
        assert time.monotonic() < deadline, f"the killed preview worker {pid} is still there"
        time.sleep(0.1)
    assert listed(server, app)[4]["state"] == "deploying"

    wait_state(server, app, 4, "deployed", head, timeout=150)
    assert server.get(preview) == (200, "deployed after all")
    assert server.get(preview, "/env/API_TOKEN") == (200, "")  # made as a preview: none of the parent's secrets
    assert "preview worker gone: deploying again" in (server.base / "serve.log").read_text()
    events = json.loads(server.cli("events", "--app", app, "--format", "json", "-n", "1000").stdout)
    assert [(e["who"], e["door"], e.get("result", "ok")) for e in events
            if e["action"] == "previews:deploy" and e["pr"] == 4] == [("previews", "cron", "ok")]


def test_ttl_expiry_on_the_timer(server, github, parent) -> None:
    """The preview of the test above has had no new commit for longer than a 1 s ttl: the timer's every-minute
    job destroys it, containers included; the parent keeps serving."""
    app, _ = parent
    assert listed(server, app)[4]["state"] == "deployed"
    assert containers(server, f"{app}-pr-4")
    server.ssh("previews:set", app, "ttl", "1s")
    wait_gone(server, app, 4, timeout=150)
    assert f"{app}-pr-4" not in server.cli("apps:list").stdout.split()
    assert containers(server, f"{app}-pr-4") == []
    events = json.loads(server.cli("events", "--app", app, "--format", "json", "-n", "1000").stdout)
    assert [(e["who"], e["door"], e["pr"]) for e in events if e["action"] == "previews:expire"] == [
        ("pushdock", "cron", 4)]
    assert server.get(app) == (200, "parent")
