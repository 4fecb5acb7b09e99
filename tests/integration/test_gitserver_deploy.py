"""`git push` over SSH into a real `pushdock serve` that builds and deploys a Dockerfile app with docker.

The deploy branch deploys during the push (progress as `remote:` lines); the ref moves only if the deploy
succeeded; a client that goes away does not stop a deploy; a concurrent push waits, then is stale.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from pushdock.state import State
from tests.harness import Server, started, unique

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with started(tmp_path_factory.mktemp("gitdeploy")) as srv:
        yield srv


def server_ref(server: Server, app: str, branch: str = "main") -> str | None:
    path = server.data / "repos" / f"{app}.git"
    cp = server.git("--git-dir", str(path), "rev-parse", "--verify", "-q", f"refs/heads/{branch}", cwd=server.base)
    return cp.stdout.strip() or None


def read_until(proc: subprocess.Popen[str], text: str, timeout: float = 120) -> str:
    assert proc.stderr is not None
    seen, deadline = "", time.monotonic() + timeout
    while text not in seen:
        # bounded even while the process stays silent: a bare read would wait for its next byte for ever
        ready, _, _ = select.select([proc.stderr.fileno()], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"{text!r} never appeared: {seen!r}"
        chunk = os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
        assert chunk, f"push ended before {text!r}: {seen!r}"
        seen += chunk
    return seen


def push_events(server: Server, app: str) -> list[dict]:  # type: ignore[type-arg]
    lines = (server.data / "events.log").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("app") == app and e["action"] == "git:push"]


def test_first_push_deploys_and_later_branches_are_stored(server: Server) -> None:
    app = unique("gd")
    work = server.app_repo(app, body="first")
    cp = server.push(work, app)
    assert cp.returncode == 0, cp.stderr
    assert f"remote: -----> Deploying {app}" in cp.stderr
    assert "remote: -----> Released v1" in cp.stderr
    assert "* [new branch]      main -> main" in cp.stderr
    assert server.get(app) == (200, "first")
    assert State(server.data).get("git", app, "deploy-branch") == "main"
    assert server_ref(server, app) == server.git("rev-parse", "HEAD", cwd=work, check=True).stdout.strip()
    assert "Released v1" in (server.data / "logs" / app / "deploy.log").read_text()

    server.commit(work, "feature", {"body.txt": "feature\n"})
    cp = server.push(work, app, "main:feature")
    assert cp.returncode == 0, cp.stderr
    assert "branch feature stored, not deployed (the deploy branch is main)" in cp.stderr
    assert "Deploying" not in cp.stderr
    assert server.get(app) == (200, "first")
    assert [e["result"] for e in push_events(server, app)] == ["ok", "ok"]


def test_failed_build_rejects_the_push_and_the_old_release_keeps_serving(server: Server) -> None:
    app = unique("gd")
    work = server.app_repo(app, body="good")
    assert server.push(work, app).returncode == 0
    good = server_ref(server, app)
    dockerfile = (work / "Dockerfile").read_text()
    server.commit(work, "break the build", {"Dockerfile": dockerfile + "RUN exit 3\n", "body.txt": "bad\n"})
    cp = server.push(work, app)
    assert cp.returncode != 0
    assert "! [remote rejected] main -> main (" in cp.stderr
    rejected = next(line for line in cp.stderr.splitlines() if "[remote rejected]" in line)
    assert rejected.endswith(")") and len(rejected) < 300
    assert server_ref(server, app) == good
    assert server.get(app) == (200, "good")
    assert [e["result"] for e in push_events(server, app)] == ["ok", "rejected"]


def test_client_gone_mid_deploy_the_deploy_completes(server: Server) -> None:
    app = unique("gd")
    work = server.app_repo(app, body="one")
    assert server.push(work, app).returncode == 0
    new = server.commit(work, "two", {"body.txt": "two\n"})
    push = subprocess.Popen(["git", "push", server.remote(app), "main"], cwd=work, env=server.git_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    read_until(push, "Building with")
    os.killpg(push.pid, signal.SIGKILL)
    push.wait(10)
    deadline = time.monotonic() + 180
    while server_ref(server, app) != new:
        assert time.monotonic() < deadline, "the deploy did not complete after the client left"
        time.sleep(0.5)
    assert server.get(app) == (200, "two")
    assert push_events(server, app)[-1]["result"] == "ok"


def test_concurrent_push_waits_then_is_stale(server: Server) -> None:
    app = unique("gd")
    work = server.app_repo(app, body="base")
    assert server.push(work, app).returncode == 0
    other = server.base / f"other-{app}"
    server.git("clone", "-q", server.remote(app), str(other), cwd=server.base, check=True)
    mine = server.commit(work, "mine", {"body.txt": "mine\n"})
    server.commit(other, "theirs", {"body.txt": "theirs\n"})
    first = subprocess.Popen(["git", "push", server.remote(app), "main"], cwd=work, env=server.git_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    read_until(first, "Deploying")
    second = server.push(other, app)
    _, first_err = first.communicate(timeout=180)
    assert first.returncode == 0, first_err
    assert f"waiting for another deploy of {app} to finish..." in second.stderr
    assert "(stale info: ref moved during push; fetch and retry)" in second.stderr
    assert server_ref(server, app) == mine
    assert server.get(app) == (200, "mine")
