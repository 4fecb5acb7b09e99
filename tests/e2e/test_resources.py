"""Resource limits end to end, with a real `pushdock serve`, the real ssh and git clients, Docker and nginx:
`resource:limit` restarts the app with zero downtime and the containers Docker runs carry the limits (their
HostConfig, and the cgroup the kernel enforces, read from inside a container); a limit too small for the app
to start is rolled back while the old containers keep serving; builds have a memory cap that kills a
runaway build (Dockerfile and buildpack) and rejects the push; limits are admin-only on every door."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import docker
import pytest

from tests.harness import Server, unique

# The tests on the module's `live` app run in order in make test's serial pass (some count failed requests
# under load); the others, each on an app of its own, run in the parallel pass.
pytestmark = pytest.mark.docker

MIB = 1 << 20
CGROUP_MEMORY = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
HOG = 'python3 -c "b = bytearray(400 * 1024 * 1024); print(len(b))"'  # 400 MiB, touched (zero-filled)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("resources")
    srv = Server(base).start()
    srv.add_key()
    srv.deployer_key = srv.new_key("deployer")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def live(server):
    app = unique("res")
    work = server.app_repo(app, body="limited")
    server.commit(work, "a worker too", {"Procfile": "web: python3 -u /app/server.py\n"
                                                     "worker: while true; do sleep 1; done\n"})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    server.add_key("ci", role="deployer", apps=app, key=server.deployer_key)
    return app


def web_container(app: str, process: str = "web"):
    client = docker.from_env()
    found = [c for c in client.containers.list(filters={"label": [f"pushdock.app={app}", f"pushdock.process={process}"]})
             if "pushdock.one-off" not in c.labels]
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def limits_of(container) -> tuple[int, int, int]:
    hc = container.attrs["HostConfig"]
    return hc["Memory"], hc["MemorySwap"], hc["NanoCpus"]


def report(server: Server, app: str) -> dict:
    return json.loads(server.cli("resource:report", app, "--format", "json").stdout)


def one_error_line(cp: subprocess.CompletedProcess[str], text: str) -> None:
    assert cp.returncode != 0
    errors = [line for line in cp.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and text in errors[0], cp.stderr


@pytest.mark.zero_downtime
def test_limits_apply_at_once_with_zero_downtime(server, live) -> None:
    app = live
    before = web_container(app).id
    assert limits_of(web_container(app)) == (0, 0, 0)
    with server.load(app, threads=2, max_seconds=90) as load:
        time.sleep(0.5)
        res = server.ssh("resource:limit", app, "--memory", "96m", "--cpu", "0.5")
        time.sleep(0.5)
    assert load.result.requests > 20 and load.result.failed == 0, load.result.errors
    assert f"{app} _default_: memory 96m, cpu 0.5" in res.stdout
    c = web_container(app)
    assert c.id != before  # a fresh container, swapped in
    assert limits_of(c) == (96 * MIB, 96 * MIB, 500_000_000)
    assert server.get(app) == (200, "limited")

    # The kernel enforces it: a one-off container (the app's default limits) reads its own cgroup.
    res = server.cli("run", app, "sh", "-c", CGROUP_MEMORY)
    assert res.stdout.strip() == str(96 * MIB)

    # A process type's own value wins over the default, field by field.
    server.cli("resource:limit", app, "--process", "web", "--memory", "128m")
    assert limits_of(web_container(app)) == (128 * MIB, 128 * MIB, 500_000_000)
    got = report(server, app)
    assert got["limits"] == {"_default_": {"memory": 96 * MIB, "cpu": 0.5}, "web": {"memory": 128 * MIB}}
    assert got["effective"]["web"] == {"memory": 128 * MIB, "cpu": 0.5}

    # Every change is recorded in refs/meta/config.
    work = server.base / f"config-{app}"
    server.git("init", "-q", str(work), cwd=server.base, check=True)
    server.git("fetch", "-q", server.remote(app), "refs/meta/config", cwd=work, check=True)
    toml = server.git("show", "FETCH_HEAD:pushdock.toml", cwd=work, check=True).stdout
    assert '[resources.web]\nmemory = "128m"\n' in toml
    assert '[resources._default_]\nmemory = "96m"\ncpu = 0.5\n' in toml
    log = server.git("log", "--format=%s", "FETCH_HEAD", cwd=work, check=True).stdout
    assert "resource:limit web memory 128m" in log

    server.cli("resource:limit-clear", app, "--all")
    assert limits_of(web_container(app)) == (0, 0, 0)
    assert report(server, app)["limits"] == {}


@pytest.mark.zero_downtime
def test_a_process_type_limit_restarts_only_that_type(server, live) -> None:
    app = live
    web = web_container(app).id
    res = server.cli("resource:limit", app, "--process", "worker", "--memory", "64m")
    assert "applies when worker runs" in res.stdout  # worker=0: nothing to restart
    server.cli("ps:scale", app, "worker=1")
    web = web_container(app).id  # (scaling is a release: web was swapped too)
    worker = web_container(app, "worker")
    assert limits_of(worker) == (64 * MIB, 64 * MIB, 0)
    server.cli("resource:limit", app, "--process", "worker", "--cpu", "0.25")
    assert web_container(app).id == web  # web untouched
    new_worker = web_container(app, "worker")
    assert new_worker.id != worker.id and limits_of(new_worker) == (64 * MIB, 64 * MIB, 250_000_000)
    server.cli("resource:limit-clear", app, "--all")
    server.cli("ps:scale", app, "worker=0")
    assert report(server, app)["limits"] == {}


@pytest.mark.zero_downtime
def test_a_limit_too_small_to_start_is_rolled_back(server, live) -> None:
    app = live
    before = web_container(app).id
    res = server.cli("resource:limit", app, "--memory", "6m", check=False)
    one_error_line(res, "the new limits were not applied (the old ones stay)")
    assert "out of memory" in res.stderr
    assert web_container(app).id == before  # the old container kept serving
    assert server.get(app) == (200, "limited")
    assert report(server, app)["limits"] == {}
    events = json.loads(server.cli("events", "--app", app, "--format", "json").stdout)
    assert any(e.get("action") == "resource:limit" and e.get("result") != "ok" for e in events), events


@pytest.mark.zero_downtime
def test_bad_input_is_one_line_and_changes_nothing(server, live) -> None:
    app = live
    for argv, text in [
        (["--memory", "1k"], "memory must be at least 6m"),
        (["--memory", "lots"], "memory must be a size such as 256m"),
        (["--cpu", "0.001"], "cpu must be a number of CPUs"),
        (["--cpu", "64"], "more than this host's"),
        (["--process", "nope", "--cpu", "1"], f"{app} has no nope process type"),
        (["--build", "--cpu", "1"], "builds take a memory cap only"),
        ([], "give --memory and/or --cpu"),
    ]:
        one_error_line(server.cli("resource:limit", app, *argv, check=False), text)
    assert report(server, app)["limits"] == {}


@pytest.mark.zero_downtime
def test_limits_are_admin_only_on_every_door(server, live) -> None:
    app = live
    res = server.ssh("resource:limit", app, "--memory", "64m", key=server.deployer_key, check=False)
    assert res.returncode == 13 and "admin only" in res.stderr, res.stderr
    assert server.ssh("resource:report", app, key=server.deployer_key).returncode == 0

    # The same change as a push to refs/meta/config: refused for the deployer, applied for an admin.
    work = server.base / f"config-dep-{app}"
    server.git("init", "-q", str(work), cwd=server.base, check=True)
    server.git("fetch", "-q", server.remote(app), "refs/meta/config", cwd=work, check=True)
    server.git("checkout", "-q", "FETCH_HEAD", cwd=work, check=True)
    toml = work / "pushdock.toml"
    toml.write_text(toml.read_text() + '\n[resources.web]\nmemory = "112m"\n')
    server.commit(work, "limit web")
    as_deployer = {**server.git_env, "GIT_SSH_COMMAND": " ".join(server.ssh_argv(server.deployer_key))}
    cp = subprocess.run(["git", "push", server.remote(app), "HEAD:refs/meta/config"], cwd=work, env=as_deployer,
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode != 0
    assert "resources: only an admin may change resource limits" in cp.stderr
    assert report(server, app)["limits"] == {}
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert limits_of(web_container(app))[0] == 112 * MIB
    assert server.get(app) == (200, "limited")

    # A pushed limit the app cannot start with is rejected as a whole; the old limits and containers stay.
    before = web_container(app).id
    toml.write_text(toml.read_text().replace('memory = "112m"', 'memory = "6m"'))
    server.commit(work, "too small")
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert cp.returncode != 0 and "[remote rejected] HEAD -> refs/meta/config" in cp.stderr, cp.stderr
    assert web_container(app).id == before
    assert report(server, app)["limits"] == {"web": {"memory": 112 * MIB}}
    assert server.get(app) == (200, "limited")
    server.cli("resource:limit-clear", app, "--all")


def _hog_dockerfile_app(server: Server, app: str) -> Path:
    work = server.app_repo(app)
    server.commit(work, "a build that needs 400 MiB", {
        "Dockerfile": "FROM pushdock/stack:bookworm\nWORKDIR /app\nCOPY server.py body.txt /app/\n"
                      f"RUN {HOG}\nEXPOSE 5000\nCMD [\"python3\", \"-u\", \"/app/server.py\"]\n"})
    return work


def test_a_dockerfile_build_over_its_memory_cap_is_killed(server) -> None:
    app = unique("hogdf")
    server.cli("apps:create", app)
    server.cli("resource:limit", app, "--build", "--memory", "64m")
    work = _hog_dockerfile_app(server, app)
    res = server.push(work, app)
    assert res.returncode != 0
    assert "[remote rejected] main -> main" in res.stderr
    assert "the build ran out of memory (its cap is 64m" in res.stderr, res.stderr
    assert server.cli("releases", app, "--format", "json").stdout.strip() == "[]"

    server.cli("resource:limit", app, "--build", "--memory", "1g")  # room enough: the same build passes
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    assert "419430400" in res.stderr  # the RUN step's output
    assert server.get(app)[0] == 200


def test_a_buildpack_build_over_its_memory_cap_is_killed(server) -> None:
    app = unique("hogbp")
    server.cli("apps:create", app)
    server.cli("resource:limit", app, "--build", "--memory", "64m")
    work = server.base / f"work-{app}"
    bin_dir = work / "buildpacks" / "hog" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in {
        "detect": "#!/bin/sh\necho Hog\n",
        "compile": f"#!/bin/sh\nset -e\necho '-----> Allocating 400 MiB'\n{HOG}\n",
    }.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (work / ".buildpacks").write_text("./buildpacks/hog\n")
    (work / "Procfile").write_text("web: python3 -m http.server $PORT\n")
    server.git("init", "-q", "-b", "main", cwd=work, check=True)
    server.commit(work, "hog")
    res = server.push(work, app)
    assert res.returncode != 0
    assert "Allocating 400 MiB" in res.stderr
    assert "the build ran out of memory (its cap is 64m" in res.stderr, res.stderr
    assert "[remote rejected] main -> main" in res.stderr
    leftovers = docker.from_env().containers.list(all=True, filters={"label": f"pushdock.build={app}"})
    assert leftovers == []
