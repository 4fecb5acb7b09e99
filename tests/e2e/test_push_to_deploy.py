"""The spine end to end: the real git and ssh clients push to `pushdock serve`, which builds with the real
Docker engine and serves through its real nginx. Nothing is mocked."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.harness import Server, unique

# The tests on the module's `deployed` app run in order in make test's serial pass (some count failed requests
# under load); the others, each on an app of its own, run in the parallel pass.
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("spine")).start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def deployed(server):
    """One app pushed once, shared by the tests that only need something running."""
    app = unique("hello")
    work = server.app_repo(app)
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    return app, work, res


def fsck(server: Server, app: str) -> None:
    repo = server.data / "repos" / f"{app}.git"
    cp = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict"], capture_output=True, text=True,
                        env=server.git_env)
    assert cp.returncode == 0, cp.stderr + cp.stdout


@pytest.mark.zero_downtime
def test_first_push_creates_builds_and_serves(server, deployed) -> None:
    app, _, res = deployed
    assert "remote: -----> Deploying" in res.stderr
    assert "remote: -----> Building with the dockerfile builder" in res.stderr
    assert "* [new branch]      main -> main" in res.stderr
    assert server.get(app) == (200, "hello from pushdock")
    assert app in server.ssh("apps:list").stdout
    report = server.cli("ps:report", app, "--format", "json").stdout
    assert '"state": "running"' in report and '"release": "v1"' in report
    fsck(server, app)


@pytest.mark.zero_downtime
def test_redeploy_under_load_drops_nothing(server, deployed) -> None:
    app, work, _ = deployed
    server.commit(work, "v2", {"body.txt": "second body\n"})
    with server.load(app, threads=2, max_seconds=60) as load:
        time.sleep(1.0)
        res = server.push(work, app)
        time.sleep(1.0)
    assert res.returncode == 0, res.stderr
    r = load.result
    assert r.requests > 50, r
    assert r.failed == 0, r.errors
    assert r.bodies["second body"] > 0 and r.bodies["hello from pushdock"] > 0, r.bodies
    assert server.get(app) == (200, "second body")


@pytest.mark.zero_downtime
def test_failing_build_rejects_push_and_keeps_serving(server, deployed) -> None:
    app, work, _ = deployed
    before = server.get(app)
    old = server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work).stdout.split()[0]
    server.commit(work, "broken", {"Dockerfile": "FROM pushdock/stack:bookworm\nRUN echo compiling; exit 3\n"})
    res = server.push(work, app)
    assert res.returncode != 0
    assert "! [remote rejected] main -> main (" in res.stderr
    assert "remote: compiling" in res.stderr  # the build output was streamed
    assert server.get(app) == before
    assert server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work).stdout.split()[0] == old
    server.git("reset", "-q", "--hard", "HEAD~1", cwd=work, check=True)
    fsck(server, app)


@pytest.mark.zero_downtime
def test_failing_readiness_rejects_push_and_keeps_serving(server, deployed) -> None:
    app, work, _ = deployed
    before = server.get(app)
    server.commit(work, "crash", {"Procfile": "web: python3 -c 'import sys; sys.exit(\"boom at boot\")'\n"})
    res = server.push(work, app)
    assert res.returncode != 0
    assert "! [remote rejected] main -> main (" in res.stderr
    assert server.get(app) == before
    server.git("reset", "-q", "--hard", "HEAD~1", cwd=work, check=True)


@pytest.mark.zero_downtime
def test_config_set_is_visible_in_the_app_and_bad_config_changes_nothing(server, deployed) -> None:
    app, _, _ = deployed
    out = server.ssh("config:set", app, "GREETING=hi there").stdout
    assert "hi there" not in out
    assert server.get(app, "/env/GREETING") == (200, "hi there")
    rc = server.ssh("config:set", app, "1X=y", check=False)
    assert rc.returncode != 0 and rc.stderr.startswith("error: invalid config key")
    assert server.get(app, "/env/GREETING") == (200, "hi there")
    # a config change that makes the app crash at boot is rolled back: old env, old containers
    bad = server.cli("config:set", app, "FAIL_AT_BOOT=1", check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("error: ")
    assert "FAIL_AT_BOOT" not in server.cli("config:show", app).stdout
    assert server.get(app, "/env/GREETING") == (200, "hi there")


def test_two_pushes_at_once_are_serialized(server) -> None:
    app = unique("race")
    work = server.app_repo(app)
    assert server.push(work, app).returncode == 0
    other = server.base / f"clone-{app}"
    server.git("clone", "-q", server.remote(app), str(other), cwd=server.base, check=True)
    server.commit(work, "from a", {"body.txt": "from a\n"})
    server.commit(other, "from b", {"body.txt": "from b\n"})
    procs = [subprocess.Popen(["git", "push", server.remote(app), "main"], cwd=w, env=server.git_env,
                              stderr=subprocess.PIPE, text=True) for w in (work, other)]
    results = [(p.wait(300), p.stderr.read()) for p in procs]
    assert sorted(rc == 0 for rc, _ in results) == [False, True], results
    loser = next(err for rc, err in results if rc != 0)
    assert "stale info" in loser or "fetch first" in loser or "non-fast-forward" in loser, loser
    winner_body = "from a" if results[0][0] == 0 else "from b"
    assert server.get(app) == (200, winner_body)
    fsck(server, app)


def test_client_disconnect_mid_deploy_still_completes(server) -> None:
    app = unique("gone")
    work = server.app_repo(app, body="survives disconnect")
    p = subprocess.Popen(["git", "push", server.remote(app), "main"], cwd=work, env=server.git_env,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stderr is not None
    for line in p.stderr:
        if "Building with" in line:
            break
    import os
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    # The outcome is recorded although nobody was left to hear it: the audit event (written once the deploy has
    # ended), the release, the log. Waiting for the app to answer instead is not enough: a new app's domain goes
    # live during nginx's reload, when old workers (which never knew it) still take some connections for a few ms.
    deadline = time.time() + 120
    while time.time() < deadline and not _deploy_events(server, app):
        time.sleep(0.3)
    assert server.get(app) == (200, "survives disconnect")
    [deployed] = _deploy_events(server, app)
    assert deployed["result"] == "ok" and deployed["release"] == "v1", deployed
    releases = json.loads(server.cli("releases", app, "--format", "json").stdout)
    assert [(r["version"], r["status"]) for r in releases] == [(1, "current")]
    assert "Released v1" in (server.data / "logs" / app / "deploy.log").read_text()
    fsck(server, app)


def _deploy_events(server: Server, app: str) -> list[dict]:  # type: ignore[type-arg]
    events = json.loads(server.cli("events", "--app", app, "--format", "json").stdout)
    return [e for e in events if e["action"] == "deploy"]


def test_unknown_key_and_bad_names(server, tmp_path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    denied = server.ssh("apps:list", key=stranger, check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    for bad in ("../x", "A B", "a" * 64):
        res = server.ssh("apps:create", bad, check=False)
        assert res.returncode != 0 and res.stderr.startswith("error: invalid app name"), res.stderr
        assert res.stderr.count("\n") == 1


def test_destroy_removes_containers_images_and_route(server) -> None:
    import docker

    app = unique("doomed")
    work = server.app_repo(app)
    assert server.push(work, app).returncode == 0
    client = docker.from_env()
    assert client.images.list(name=f"pushdock/{app}")
    res = server.ssh("apps:destroy", app, check=False)
    assert res.returncode != 0 and "--force" in res.stderr  # asks for confirmation first
    server.ssh("apps:destroy", app, "--force")
    assert client.containers.list(all=True, filters={"label": f"pushdock.app={app}"}) == []
    assert client.images.list(name=f"pushdock/{app}") == []
    assert server.get(app)[0] == 404
    assert app not in server.cli("apps:list").stdout
