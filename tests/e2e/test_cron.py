"""Cron jobs end to end: a real `pushdock serve` (one for the module) runs app.json jobs as real one-off
containers of the app's release, with its storage mounts; `cron:run`, `logs -p cron`, events, and a push with a
bad schedule.

One app, two pushes. The timer's tick logic (once per tick, no replay of missed ticks) and a long job that
never overlaps itself are unit tests with real threads (tests/unit/pushdock/test_timer.py, test_cron.py)."""

from __future__ import annotations

import json
import time

import docker
import pytest

from tests.harness import Server, unique

pytestmark = pytest.mark.docker

TICK = "echo cron-tick $GREETING from $(hostname); date +%s >> /data/ticks"  # /data: a storage mount
MANUAL = "echo manual run $GREETING; echo to stderr >&2; exit 4"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("cron")).start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def deployed(server):
    app = unique("cron")
    server.cli("apps:create", app)
    server.cli("config:set", app, "GREETING=hello")
    server.cli("storage:ensure-directory", f"{app}-data")
    server.cli("storage:mount", app, f"{app}-data:/data")
    work = server.app_repo(app)
    server.commit(work, "cron", {"app.json": json.dumps({"cron": [
        {"command": TICK, "schedule": "* * * * *"}, {"command": MANUAL, "schedule": "@yearly"}]})})
    res = server.push(work, app)
    assert res.returncode == 0, res.stderr
    return app, work, time.time()


def jobs(server: Server, app: str) -> dict[str, dict]:
    return {j["command"]: j for j in json.loads(server.cli("cron:list", app, "--format", "json").stdout)}


def cron_events(server: Server, app: str) -> list[dict]:
    events = json.loads(server.cli("events", "--app", app, "-n", "200", "--format", "json").stdout)
    return [e for e in events if e["action"] == "cron"]


def test_a_bad_schedule_rejects_the_push_with_one_line(server, deployed) -> None:
    app, work, _ = deployed
    before = jobs(server, app)
    server.commit(work, "bad cron", {"app.json": json.dumps({"cron": [{"command": "true", "schedule": "61 * * * *"}]})})
    res = server.push(work, app)
    assert res.returncode != 0
    [line] = [x for x in res.stderr.splitlines() if "[remote rejected]" in x]
    assert line.strip().startswith("! [remote rejected] main -> main (app.json cron[0]: invalid schedule '61 * * * *'")
    assert jobs(server, app).keys() == before.keys()  # the release that runs keeps its jobs
    server.git("reset", "-q", "--hard", "HEAD~1", cwd=work, check=True)


def test_cron_run_runs_the_job_now_in_a_container_with_the_apps_env(server, deployed) -> None:
    app, _, _ = deployed
    manual = jobs(server, app)[MANUAL]
    assert manual["schedule"] == "@yearly" and manual["last_run"] is None and manual["next_run"] > time.time()
    cp = server.ssh("cron:run", app, manual["id"], check=False)
    assert cp.returncode == 4, cp.stderr  # the job's exit status
    assert sorted(cp.stdout.splitlines()) == ["manual run hello", "to stderr"]  # both streams, in either order
    assert cp.stderr == ""
    after = jobs(server, app)[MANUAL]
    assert after["status"] == 4 and after["last_run"] >= time.time() - 120
    logs = server.cli("logs", app, "-p", "cron").stdout
    assert f"{app} cron.{manual['id']}: manual run hello" in logs
    [event] = [e for e in cron_events(server, app) if e["job"] == manual["id"]]
    assert event["result"] == "exit 4" and event["door"] == "ssh" and event["release"] == "v1"
    info = json.loads(server.cli("releases:info", app, "v1", "--format", "json").stdout)
    assert [c["schedule"] for c in info["cron"]] == ["* * * * *", "@yearly"]  # kept on the release
    unknown = server.cli("cron:run", app, "nope", check=False)
    assert unknown.returncode == 1 and unknown.stderr == f"error: {app} has no cron job 'nope' (see `cron:list {app}`)\n"


def test_serve_runs_an_every_minute_job_within_70s_once_per_tick(server, deployed) -> None:
    app, _, pushed = deployed
    tick = jobs(server, app)[TICK]
    deadline = pushed + 70
    runs: list[dict] = []
    while time.time() < deadline and not runs:
        runs = [e for e in cron_events(server, app) if e["job"] == tick["id"]]
        time.sleep(1)
    assert runs, f"no run of the every-minute job within 70 s of the push:\n{(server.base / 'serve.log').read_text()[-3000:]}"
    first = runs[0]
    assert first["result"] == "ok" and first["door"] == "cron" and first["who"] == "pushdock"
    started = first["time"] - first["duration"]
    assert started % 60 < 5, started  # at the tick, not some time after it
    out = server.cli("logs", app, "-p", "cron", "-n", "5").stdout
    assert f"{app} cron.{tick['id']}: cron-tick hello from " in out, out  # its own container
    listed = jobs(server, app)[TICK]
    assert listed["status"] == 0 and listed["next_run"] - time.time() <= 60
    # once per tick: every run so far started in a minute of its own
    runs = [e for e in cron_events(server, app) if e["job"] == tick["id"]]
    minutes = [int((e["time"] - e["duration"]) // 60) for e in runs]
    assert len(minutes) == len(set(minutes)), minutes
    # the job runs with the app's storage mounts: each run left its line in the mounted directory, on the host
    ticks = (server.data / "storage" / f"{app}-data" / "ticks").read_text().split()
    assert len(ticks) >= len(runs) >= 1 and len(ticks) == len(set(ticks)), (ticks, runs)
    # each run's container is gone once it ended
    label = f"pushdock.data-dir={server.data.absolute()}"
    left = docker.from_env().containers.list(all=True, filters={"label": [label, "pushdock.one-off=cron"]})
    assert all(c.status == "running" for c in left), [(c.name, c.status) for c in left]


def test_maintenance_pauses_every_job(server, deployed) -> None:
    app, _, _ = deployed
    server.cli("cron:set", app, "maintenance", "on")
    report = json.loads(server.cli("cron:report", app, "--format", "json").stdout)
    assert report["maintenance"] == "on" and report["jobs"] == 2 and report["failing"] == [jobs(server, app)[MANUAL]["id"]]
    assert all(j["maintenance"] and j["next_run"] is None for j in jobs(server, app).values())
    assert "paused" in server.cli("cron:list", app).stdout
    bad = server.cli("cron:set", app, "maintenance", "maybe", check=False)
    assert bad.returncode == 2 and bad.stderr == "error: maintenance must be on or off, not 'maybe'\n"
    server.cli("cron:set", app, "maintenance", "off")
    assert all(j["next_run"] for j in jobs(server, app).values())
