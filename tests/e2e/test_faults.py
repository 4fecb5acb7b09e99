"""Faults (issue 8): each one with the real server, git, Docker and nginx.

- the data disk fills up during a push: rejected with a clear error, repo and state still valid;
- two config:set and a push racing: serialized by the app lock, no lost update;
- serve and its deploy worker SIGKILLed mid-deploy: on restart no orphan containers, no pending release,
  the lock is free, the old release serves, and the push can be retried.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.harness import Server, unique

pytestmark = pytest.mark.docker


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path).start()
    srv.add_key()
    yield srv
    srv.stop()


def fsck(server: Server, app: str) -> None:
    repo = server.data / "repos" / f"{app}.git"
    cp = subprocess.run(["git", "--git-dir", str(repo), "fsck"], capture_output=True, text=True, env=server.git_env)
    assert cp.returncode == 0, cp.stderr


def test_racing_config_changes_and_push_lose_nothing(server) -> None:
    app = unique("race")
    work = server.app_repo(app)
    assert server.push(work, app).returncode == 0
    server.commit(work, "v2", {"body.txt": "raced body\n"})
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        results[name] = fn()

    threads = [
        threading.Thread(target=run, args=("a", lambda: server.ssh("config:set", app, "A=1", check=False))),
        threading.Thread(target=run, args=("b", lambda: server.cli("config:set", app, "B=2", check=False))),
        threading.Thread(target=run, args=("push", lambda: server.push(work, app))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(r.returncode == 0 for r in results.values()), {k: r.stderr for k, r in results.items()}
    env = json.loads(server.cli("config:export", app, "--format", "json").stdout)
    assert env["A"] == "1" and env["B"] == "2"
    assert server.get(app) == (200, "raced body")
    assert server.get(app, "/env/A") == (200, "1") and server.get(app, "/env/B") == (200, "2")


def test_full_data_disk_rejects_the_push_cleanly(tmp_path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.fail("this test needs to mount a tmpfs (root)")
    try:
        srv = Server(tmp_path / "srv")
        srv.data = mnt / "data"
        srv.env["PUSHDOCK_DATA_DIR"] = str(srv.data)
        srv.start()
        try:
            srv.add_key()
            app = unique("full")
            work = srv.app_repo(app)
            (work / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))
            srv.commit(work, "big")
            res = srv.push(work, app)
            assert res.returncode != 0
            assert "space" in res.stderr.lower() or "unpack" in res.stderr.lower(), res.stderr
            repo = srv.data / "repos" / f"{app}.git"
            if repo.exists():
                fsck(srv, app)
                assert srv.git("ls-remote", "--heads", srv.remote(app), cwd=work).stdout.strip() == ""
            # the server still works once space is back
            subprocess.run(["git", "--git-dir", str(repo), "gc", "--prune=now", "-q"], env=srv.git_env)
            assert srv.ssh("apps:list").returncode == 0
        finally:
            srv.stop()
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def _children(pid: int) -> list[int]:
    return [int(x) for x in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]


def serve_and_its_workers(server) -> list[int]:  # type: ignore[no-untyped-def]
    """serve's children (proxy helpers, the zygote) and theirs: the SSH workers are forked by serve's zygote."""
    return [w for child in _children(server.proc.pid) for w in (child, *_children(child))]


def test_kill_serve_and_worker_mid_deploy_then_recover(server) -> None:
    app = unique("crash")
    work = server.app_repo(app, body="old release")
    assert server.push(work, app).returncode == 0
    server.commit(work, "slow", {"Procfile": "web: sleep 3 && python3 -u /app/server.py\n",
                                 "body.txt": "new release\n"})
    p = subprocess.Popen(["git", "push", server.remote(app), "main"], cwd=work, env=server.git_env,
                         stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    for line in p.stderr:
        if "Starting web" in line:
            break
    # kill serve and every worker (workers run in their own sessions: find them by parentage)
    workers = serve_and_its_workers(server)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    p.wait(60)
    assert server.get(app) == (200, "old release")  # nginx outlives serve
    server.start()
    import docker

    client = docker.from_env()
    containers = client.containers.list(all=True, filters={"label": f"pushdock.app={app}"})
    assert {c.labels["pushdock.release"] for c in containers} == {"1"}, [c.name for c in containers]
    releases = json.loads(server.cli("releases", app, "--format", "json").stdout)
    assert all(r["status"] != "pending" for r in releases), releases
    assert server.get(app) == (200, "old release")
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    deadline = time.time() + 30
    while time.time() < deadline and server.get(app) != (200, "new release"):
        time.sleep(0.5)
    assert server.get(app) == (200, "new release")
    fsck(server, app)


def test_restarted_serve_opens_at_once_while_a_deploy_holds_an_app(server) -> None:
    """Issue 13 item 5: a deploy worker that outlives serve keeps its app's lock (here: a real push in a long
    release phase); the restarted serve answers /healthz, SSH commands and pushes of other apps at once,
    reports the held app as being reconciled, and reconciles it once the deploy ends."""
    held, other = unique("held"), unique("free")
    work = server.app_repo(held, body="held v1")
    assert server.push(work, held).returncode == 0
    other_work = server.app_repo(other, body="free v1")
    assert server.push(other_work, other).returncode == 0
    server.commit(work, "slow release", {"Procfile": "web: python3 -u /app/server.py\n"
                                                     "release: echo release phase started; sleep 25\n",
                                         "body.txt": "held v2\n"})
    push = subprocess.Popen(["git", "push", server.remote(held), "main"], cwd=work, env=server.git_env,
                            stderr=subprocess.PIPE, text=True)
    assert push.stderr is not None
    for line in push.stderr:
        if "release phase started" in line:
            break
    server.stop_serve()  # SIGTERM: the deploy worker finishes on its own, holding the app's lock
    started = time.monotonic()
    server.start(reconciled=False)
    health = server.health()
    opened = time.monotonic() - started
    assert opened < 10 and held in health["reconciling"], (opened, health)
    deadline = time.monotonic() + 30  # the other app is reconciled meanwhile, the held one waits
    while other in health["reconciling"] and time.monotonic() < deadline:
        time.sleep(0.2)
        health = server.health()
    assert list(health["reconciling"]) == [held], health
    # the other app is served and takes commands and pushes meanwhile
    assert server.ssh("config:set", "--no-restart", other, "WHILE=held").returncode == 0
    assert server.ssh("config:get", other, "WHILE").stdout.strip() == "held"
    server.commit(other_work, "v2", {"body.txt": "free v2\n"})
    assert server.push(other_work, other).returncode == 0
    assert server.get(other) == (200, "free v2")
    assert held in server.health()["reconciling"]
    push.wait(120)
    server.wait_reconciled(90)
    releases = json.loads(server.cli("releases", held, "--format", "json").stdout)
    assert releases[0]["status"] == "current" and all(r["status"] != "pending" for r in releases), releases
    assert server.get(held) == (200, "held v2")
    log = (server.data / "logs" / "pushdock.log").read_text()
    assert "reconcile waits for the app's lock" in log


def test_a_worker_killed_mid_build_leaves_no_build_directory(server) -> None:
    """The build directory lives under the data dir and the next `serve` start removes it; nothing is left in
    the system's temp dir."""
    import glob
    import tempfile

    app = unique("killbuild")
    work = server.app_repo(app, sample="dockerfile-hello")
    with open(work / "Dockerfile", "a") as f:
        f.write("RUN echo build-is-running && sleep 120\n")
    server.commit(work, "slow build")
    p = subprocess.Popen(["git", "push", server.remote(app), "main"], cwd=work, env=server.git_env,
                         stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    for line in p.stderr:
        if "build-is-running" in line:
            break
    in_tmp = f"{tempfile.gettempdir()}/pushdock-build-{app}-*"
    during = sorted((server.data / "builds").glob(f"{app}.*")) + [Path(d) for d in glob.glob(in_tmp)]
    assert during, "no build directory while the build runs"
    workers = serve_and_its_workers(server)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    p.wait(60)
    server.start()  # reconciles
    left = sorted({str(d) for d in during if d.exists()} | set(glob.glob(in_tmp)))
    assert left == [], left
    assert all(d.parent == server.data / "builds" for d in during), during
    assert "build directories left by dead processes" in (server.base / "serve.log").read_text()


def test_a_large_file_is_deployed_with_bounded_memory(server) -> None:
    """Neither taking the pack in nor exporting the tree for the build holds a pushed file whole: deploying a
    48 MiB incompressible file costs the worker far less than its size (it was about three times its size)."""
    app = unique("bigdeploy")
    work = server.app_repo(app)
    assert server.push(work, app).returncode == 0
    small = server.worker_peaks("git-receive-pack")[-1]
    (work / "big.bin").write_bytes(os.urandom(48 << 20))
    server.commit(work, "a big file")
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    big = server.worker_peaks("git-receive-pack")[-1]
    assert big - small < 16 << 10, f"the worker's peak grew by {(big - small) >> 10} MiB for a 48 MiB file"
