"""Fault: the Docker engine restarts under a running pushdock. The apps come back by themselves (containers
run with restart policy unless-stopped once ready, and publish fixed 127.0.0.1 host ports, so the proxy's
routes stay right), and so do PostgreSQL and Redis services with their data; the proxy serves the apps
again; while the engine is down, commands fail with one clear line and `pushdock serve` stays up;
afterwards a push deploys as before. A swarm app comes back too: the swarm restarts its task on a new host
port and `serve`, which follows instances that move, re-routes to it.

This stops the real, shared dockerd (SIGTERM, as a host shutdown or package upgrade would) and starts it again
with scripts/start-dockerd.sh, so it is marked engine_restart and runs alone: `pytest --engine-restart`, which
`make test` runs after the rest of the suite."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest

from tests.harness import ROOT, Server, swarm_mode, unique

pytestmark = [pytest.mark.docker, pytest.mark.engine_restart]

PIDFILE = Path("/var/run/docker.pid")
WORKER = "worker: while true; do sleep 1; done\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("engine")).start()
    srv.add_key()
    yield srv
    srv.stop()


def engine_up() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def stop_engine(timeout: float = 90) -> None:
    """SIGTERM dockerd (it stops its containers first, as on a host shutdown) and wait until it is gone."""
    pid = int(PIDFILE.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # not our child in practice; harmless if it is
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "dockerd did not stop"
    assert not engine_up()


def start_engine() -> None:
    subprocess.run([str(ROOT / "scripts" / "start-dockerd.sh")], check=True, timeout=60)
    assert engine_up()


def app_containers(app: str) -> dict[str, tuple[str, str]]:
    """name -> (id, status) of the app's instances."""
    found = docker.from_env().containers.list(all=True, filters={"label": f"pushdock.app={app}"})
    return {c.name: (c.id, c.status) for c in found if "pushdock.one-off" not in c.labels}


def wait_served(server: Server, app: str, body: str, timeout: float = 60) -> float:
    """Seconds until `body` is served 10 times in a row (a proxy reload has a ~100 ms window where old
    workers still answer with the old routes: one good answer is not yet "served again")."""
    started = time.monotonic()
    streak = 0
    while time.monotonic() - started < timeout:
        with contextlib.suppress(OSError):
            streak = streak + 1 if server.get(app) == (200, body) else 0
            if streak == 10:
                return time.monotonic() - started
        time.sleep(0.05 if streak else 0.2)
    raise AssertionError(f"{app} not served again within {timeout:g}s: {server.get(app)}")


def restart_engine(server: Server, app: str) -> None:
    """Stop the engine; while it is down a command about `app` fails in one line and serve lives; start it."""
    t0 = time.monotonic()
    try:
        stop_engine()
        stopped = time.monotonic() - t0
        res = server.cli("ps:report", app, check=False)
        assert res.returncode != 0
        errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Docker engine" in errors[0], res.stderr
        assert server.proc is not None and server.proc.poll() is None
    finally:
        t1 = time.monotonic()
        start_engine()
    print(f"\nengine stopped in {stopped:.1f}s, answered {time.monotonic() - t1:.1f}s after its start")


def test_apps_come_back_after_an_engine_restart(server) -> None:
    app = unique("eng")
    work = server.app_repo(app, body="survives restarts")
    server.commit(work, "web and worker", {"Procfile": "web: python3 -u /app/server.py\n" + WORKER})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    server.cli("ps:scale", app, "web=2", "worker=1")
    before = app_containers(app)
    assert len(before) == 3 and {s for _, s in before.values()} == {"running"}, before
    assert server.get(app) == (200, "survives restarts")

    restart_engine(server, app)

    waited = wait_served(server, app, "survives restarts")
    # the web instances answering says nothing of the worker's: the engine (restart policy) or serve's reconcile
    # starts each one on its own; wait (bounded) until every instance runs again
    deadline = time.monotonic() + 60
    after = app_containers(app)
    while {s for _, s in after.values()} != {"running"} and time.monotonic() < deadline:
        time.sleep(0.5)
        after = app_containers(app)
    assert {n: i for n, (i, _) in after.items()} == {n: i for n, (i, _) in before.items()}  # the same instances
    assert {s for _, s in after.values()} == {"running"}, after
    print(f"served again {waited:.1f}s after the engine answered")

    # pushdock goes on working: a new push deploys with zero downtime as usual.
    server.commit(work, "after the restart", {"body.txt": "deployed after the restart\n"})
    with server.load(app, threads=2, max_seconds=90) as load:
        time.sleep(0.3)
        res = server.push(work, app)
        time.sleep(0.3)
    assert res.returncode == 0, res.stderr
    assert load.result.failed == 0, load.result.errors
    assert server.get(app) == (200, "deployed after the restart")


def test_swarm_apps_come_back_on_new_ports_and_are_followed(server) -> None:
    """A swarm app after an engine restart: the swarm restarts its task (a new container on a new host port)
    and `serve`, which watches for instances that move, re-routes the proxy to it without a deploy."""
    app = unique("engsw")
    with swarm_mode():
        try:
            server.cli("apps:create", app)
            server.cli("scheduler:set", app, "selected", "swarm")
            res = server.push(server.app_repo(app, body="swarm survives"), app)
            assert res.returncode == 0, res.stderr
            assert server.get(app) == (200, "swarm survives")
            [before] = web_containers(app)

            restart_engine(server, app)

            waited = wait_served(server, app, "swarm survives", timeout=90)
            [after] = web_containers(app)
            print(f"swarm app served again {waited:.1f}s after the engine answered "
                  f"(task container {'replaced' if after.id != before.id else 'restarted'})")
        finally:
            server.cli("apps:destroy", app, "--force", check=False)


def web_containers(app: str) -> list:  # type: ignore[type-arg]
    return docker.from_env().containers.list(filters={"label": [f"pushdock.app={app}", "pushdock.process=web"]})


def test_service_data_survives_an_engine_restart(server) -> None:
    """PostgreSQL and Redis services come back by themselves (restart policy unless-stopped) with their data (in
    named volumes), and the buildpack app linked to both (psycopg, redis-py) reads its rows and its key again,
    with no command run."""
    app, db, rd = unique("engdb"), unique("engdb"), unique("engrd")
    server.cli("postgres:create", db, timeout=900)
    server.cli("redis:create", rd, timeout=900)
    res = server.push(server.app_repo(app, sample="buildpack-services"), app)
    assert res.returncode == 0, res.stderr
    server.ssh("postgres:link", db, app)
    server.ssh("redis:link", rd, app)
    assert server.get(app, "/write?kept") == (200, "written")
    assert server.get(app, "/set?colour=blue") == (200, "set")
    time.sleep(1.5)  # appendfsync everysec: the key is on disk within a second (as for any Redis)

    restart_engine(server, app)

    for path, want in (("/read", (200, "kept")), ("/get?colour", (200, "blue"))):
        deadline = time.monotonic() + 90  # the app and the services start in any order: until all answer
        while server.get(app, path) != want and time.monotonic() < deadline:
            time.sleep(0.5)
        assert server.get(app, path) == want
    out = server.ssh("postgres:backup", db, "--verify")  # and backups work as before
    assert out.stdout.rstrip().endswith("verified"), out
    out = server.ssh("redis:backup", rd, "--verify")
    assert out.stdout.rstrip().endswith("verified"), out
    for kind, name in (("postgres", db), ("redis", rd)):
        server.ssh(f"{kind}:unlink", name, app)
        server.ssh(f"{kind}:destroy", name, "--force")
