"""Builds and app housekeeping through the real SSH door (a real `pushdock serve`, git and ssh clients, Docker,
nginx): builds:list|output|cancel, logs:failed, repo:gc|purge-cache, ps:inspect, enter, apps:clone.

One server and one app (`main`) for the module; its pushes, in order: a good deploy, a failing build, a long
build that is cancelled, a good deploy again (the lock is free), one after repo:purge-cache; then the clone
deploys once. A second app's herokuish build is cancelled.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import docker
import pytest

from tests.harness import Server, unique

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("housekeeping"))
    srv.start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def main(server: Server):
    """(app, work tree): deployed once, serving `first`."""
    app = unique("hk")
    work = server.app_repo(app, body="first")
    cp = server.push(work, app)
    assert cp.returncode == 0, cp.stderr
    return app, work


@pytest.fixture(scope="module")
def stranger(server: Server, tmp_path_factory):
    """A deployer key for another app only."""
    key = tmp_path_factory.mktemp("stranger") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    server.add_key("stranger", role="deployer", apps="some-other-app", key=key)
    return key


def builds(server: Server, app: str) -> list[dict]:
    return json.loads(server.ssh("builds:list", app, "--format", "json").stdout)


def test_builds_list_output_and_logs_failed(server, main, stranger) -> None:
    app, work = main
    good = server.git("rev-parse", "HEAD", cwd=work, check=True).stdout.strip()
    dockerfile = (work / "Dockerfile").read_text()
    bad = server.commit(work, "breaks", {"Dockerfile": dockerfile.replace("CMD", "RUN echo about to fail && exit 3\nCMD")})
    cp = server.push(work, app)
    assert cp.returncode != 0 and "about to fail" in cp.stderr

    listed = builds(server, app)
    assert [(b["id"], b["commit"], b["builder"], b["result"]) for b in listed] == [
        (2, bad, "dockerfile", "failed"), (1, good, "dockerfile", "succeeded")]
    assert listed[1]["release"] == "v1" and listed[1]["took"] > 0 and listed[0]["started"].endswith("Z")
    text = server.ssh("builds:list", app).stdout
    assert text.splitlines()[0].split() == ["ID", "COMMIT", "BUILDER", "STARTED", "TOOK", "RESULT", "RELEASE"]
    assert bad[:7] in text and "failed" in text

    first = server.ssh("builds:output", app, "1").stdout
    assert "Deploying" in first and "Released v1" in first and "about to fail" not in first
    failed = server.ssh("logs:failed", app)
    assert "about to fail" in failed.stdout and "docker build failed" in failed.stdout
    assert failed.stderr == ""
    assert server.ssh("builds:output", app).stdout == server.ssh("builds:output", app, "2").stdout

    for args, code, message in [
        (("builds:output", app, "x1"), 2, "error: invalid build id"),
        (("builds:output", app, "99"), 1, f"error: app {app} has no build 99"),
        (("logs:failed", "no-such-app"), 1, "error: app no-such-app does not exist"),
    ]:
        cp = server.ssh(*args, check=False)
        assert cp.returncode == code and cp.stderr.startswith(message) and cp.stderr.count("\n") == 1, cp
    for args in (("builds:list", app), ("builds:output", app, "1"), ("logs:failed", app), ("builds:cancel", app),
                 ("repo:gc", app), ("repo:purge-cache", app), ("ps:inspect", app), ("enter", app, "web", "true")):
        cp = server.ssh(*args, key=stranger, check=False)
        assert cp.returncode == 13 and "has no access to app" in cp.stderr, (args, cp)


def test_builds_cancel_during_a_long_build(server, main) -> None:
    app, work = main
    marker = uuid.uuid4().hex[:12]
    dockerfile = (work / "Dockerfile").read_text().replace("RUN echo about to fail && exit 3\n", "")
    server.commit(work, "slow", {"Dockerfile": dockerfile.replace("CMD", f"RUN echo {marker} && sleep 30\nCMD")})
    push = subprocess.Popen(["git", "push", server.remote(app), "main"], cwd=work, env=server.git_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while marker not in server.ssh("builds:output", app, check=False).stdout:  # the RUN step has started
            assert time.monotonic() < deadline and push.poll() is None, "the slow build never reached its RUN step"
            time.sleep(0.5)
        assert builds(server, app)[0]["result"] == "running"
        started = time.monotonic()
        cancel = server.ssh("builds:cancel", app, check=False)
        took = time.monotonic() - started
        assert cancel.returncode == 0 and f"Cancelled build 3 of {app}" in cancel.stdout, cancel
        assert cancel.stderr == ""
        _, stderr = push.communicate(timeout=60)
    finally:
        if push.poll() is None:
            push.kill()
    assert push.returncode != 0 and "[remote rejected] main -> main (cancelled)" in stderr, stderr
    assert took < 10, f"the cancel took {took:.1f}s"
    assert builds(server, app)[0]["result"] == "cancelled"
    # no build container is left: the RUN step's container is gone soon after the client went away
    deadline = time.monotonic() + 30
    while leftovers := [c["Id"][:12] for c in docker.from_env().api.containers(all=True)
                        if marker in c.get("Command", "")]:
        assert time.monotonic() < deadline, f"build containers left: {leftovers}"
        time.sleep(1)
    again = server.ssh("builds:cancel", app, check=False)
    assert again.returncode == 1 and again.stderr == f"error: no build of {app} is running\n"
    # the lock is free: the next push deploys
    server.commit(work, "fast again", {"Dockerfile": dockerfile, "body.txt": "second\n"})
    cp = server.push(work, app)
    assert cp.returncode == 0, cp.stderr
    assert server.get(app) == (200, "second")
    assert [b["result"] for b in builds(server, app)] == ["succeeded", "cancelled", "failed", "succeeded"]


def test_builds_cancel_removes_a_herokuish_build_container(server) -> None:
    """A buildpack whose compile step sleeps: the cancel removes its build container (label pushdock.build)."""
    app, marker = unique("slowbp"), uuid.uuid4().hex[:12]
    work = server.base / f"work-{app}"
    (work / "buildpacks" / "slow" / "bin").mkdir(parents=True)
    for name, text in {"detect": "#!/bin/sh\necho Slow\n",
                       "compile": f"#!/bin/sh\necho {marker}\nexec sleep 30\n"}.items():
        (work / "buildpacks" / "slow" / "bin" / name).write_text(text)
        (work / "buildpacks" / "slow" / "bin" / name).chmod(0o755)
    server.git("init", "-q", "-b", "main", cwd=work, check=True)
    server.commit(work, "slow buildpack", {".buildpacks": "./buildpacks/slow\n"})
    push = subprocess.Popen(["git", "push", server.remote(app), "main"], cwd=work, env=server.git_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    labels = {"label": [f"pushdock.build={app}", f"pushdock.data-dir={server.data.absolute()}"]}
    try:
        deadline = time.monotonic() + 120
        while marker not in server.ssh("builds:output", app, check=False).stdout:
            assert time.monotonic() < deadline and push.poll() is None, "the buildpack never started compiling"
            time.sleep(0.5)
        assert len(docker.from_env().api.containers(filters=labels)) == 1
        cancel = server.ssh("builds:cancel", app, check=False)
        assert cancel.returncode == 0 and f"Cancelled build 1 of {app}" in cancel.stdout, cancel
        _, stderr = push.communicate(timeout=60)
    finally:
        if push.poll() is None:
            push.kill()
    assert "[remote rejected] main -> main (cancelled)" in stderr, stderr
    assert docker.from_env().api.containers(all=True, filters=labels) == []
    assert [(b["builder"], b["result"]) for b in builds(server, app)] == [("herokuish", "cancelled")]


def test_repo_gc_and_purge_cache(server, main) -> None:
    app, work = main
    gc = server.ssh("repo:gc", app)
    assert gc.stdout.startswith(f"=====> {app}: repository ") and gc.stderr == ""
    refs = server.git("ls-remote", server.remote(app), cwd=work, check=True).stdout
    assert server.git("rev-parse", "HEAD", cwd=work, check=True).stdout.strip() in refs
    # The herokuish cache is DATA_DIR/cache/APP (mounted at /cache in the build container); a file is put
    # there by hand here rather than by a herokuish build, which would cost minutes.
    cache = server.data / "cache" / app
    (cache / "node_modules").mkdir(parents=True)
    (cache / "node_modules" / "x.js").write_text("x" * 4096)
    purged = server.ssh("repo:purge-cache", app)
    assert purged.stdout.startswith(f"=====> {app}: purged herokuish cache") and cache.is_dir()
    assert "Dockerfile layer cache" in purged.stdout and list(cache.iterdir()) == []
    assert "purged herokuish cache (0.0 MiB)" in server.ssh("repo:purge-cache", app).stdout
    # the engine's layer cache is every app's: this app's next Dockerfile build ignores it instead, once
    server.commit(work, "third", {"body.txt": "third\n"})
    cp = server.push(work, app)
    assert cp.returncode == 0 and "Building without the layer cache" in cp.stderr, cp.stderr
    assert "Using cache" not in cp.stderr and server.get(app) == (200, "third")
    assert not (server.data / "data" / "builder-dockerfile" / app / "no-cache-next-build").exists()
    events = [e["action"] for e in json.loads(server.cli("events", "-n", "10", "--app", app, "--format", "json").stdout)]
    assert "repo:purge-cache" in events and "repo:gc" in events


def test_ps_inspect_masks_config_values(server, main) -> None:
    app, _ = main
    server.ssh("config:set", app, "SECRET_TOKEN=hunter2-value")
    cp = server.ssh("ps:inspect", app)
    containers = json.loads(cp.stdout)
    assert containers and all(c["Config"]["Labels"]["pushdock.app"] == app for c in containers)
    env = containers[0]["Config"]["Env"]
    assert "SECRET_TOKEN=***" in env and "hunter2" not in cp.stdout
    assert any(e.startswith("PORT=") and e != "PORT=***" for e in env)


def test_enter_a_running_container(server, main) -> None:
    app, _ = main
    cp = server.ssh("enter", app, "web", "cat", "/app/body.txt")
    assert cp.returncode == 0 and cp.stdout == "third\n"
    name = json.loads(server.ssh("ps:report", app, "--format", "json").stdout)[0]["container"]
    cp = server.ssh("enter", app, "--container-id", name, "sh", "-c", "echo $SECRET_TOKEN; exit 5", check=False)
    assert cp.returncode == 5 and cp.stdout == "hunter2-value\n"
    # ssh -tt: an interactive shell on a terminal in the running container
    shell = subprocess.run([*server.ssh_argv(server.key), "-tt", "pushdock@127.0.0.1", f"enter {app} web"],
                           input="test -t 0 && echo on-a-tty $((6 * 7))\nexit 3\n", capture_output=True, text=True,
                           timeout=60, env=server.git_env)
    assert shell.returncode == 3 and "on-a-tty 42" in shell.stdout, shell
    for args, message in [(("enter", app, "worker"), f"error: {app} has no running worker container"),
                          (("enter", app, "--container-id", "nope"), f"error: {app} has no running container 'nope'"),
                          (("enter", app, "Web;"), "error: invalid process")]:
        cp = server.ssh(*args, check=False)
        assert cp.returncode != 0 and cp.stderr.startswith(message) and cp.stderr.count("\n") == 1, cp


def test_apps_clone_deploys_and_serves(server, main) -> None:
    app, _ = main
    server.ssh("domains:add", app, "own.example.test")
    clone = unique("clone")
    cp = server.ssh("apps:clone", app, clone)
    assert cp.returncode == 0 and f"Cloned {app} to {clone} (v1)" in cp.stdout, cp
    assert server.get(clone) == (200, "third") and server.get(app) == (200, "third")
    assert server.ssh("config:get", clone, "SECRET_TOKEN").stdout == "hunter2-value\n"
    assert "own.example.test" not in server.ssh("domains:report", clone).stdout
    assert [b["result"] for b in builds(server, clone)] == ["succeeded"]
    again = server.ssh("apps:clone", app, clone, check=False)
    assert again.returncode == 1 and again.stderr == f"error: app {clone} already exists\n"
    assert server.ssh("apps:clone", "--ignore-existing", app, clone).returncode == 0
    copy = unique("copy")
    cp = server.ssh("apps:clone", "--skip-deploy", app, copy)
    assert cp.stdout.strip() == f"-----> Cloned {app} to {copy}"
    assert server.ssh("releases:list", copy, "--format", "json").stdout.strip() == "[]"
    config_log = server.git("ls-remote", server.remote(copy), "refs/meta/config", cwd=server.base, check=True)
    assert "refs/meta/config" in config_log.stdout


def test_apps_clone_is_admin_only(server, main, tmp_path) -> None:
    app, _ = main
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    server.add_key("deployer-of-main", role="deployer", apps=app, key=key)
    cp = server.ssh("apps:clone", app, unique("nope"), key=key, check=False)
    assert cp.returncode == 13 and "admin only" in cp.stderr
    assert server.ssh("builds:list", app, key=key).returncode == 0  # its own app's builds, though


