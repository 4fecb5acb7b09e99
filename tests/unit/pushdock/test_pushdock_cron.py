"""App cron jobs (pushdock/cron.py): ids, maintenance, the timer kept in step with releases, the record of
runs, overlap across callers, and the cron log. The scheduler is a fake registered through the real bus (a
real job in a real container runs in tests/e2e/test_cron.py); state, flocks, the timer and its threads are real."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pushdock import cron
from pushdock.bus import Bus
from pushdock.context import Context
from pushdock.errors import Conflict, DeployFailed, NotFound, TaskFailed
from pushdock.settings import Settings
from pushdock.specs import hookimpl
from pushdock.state import Identity, Release
from pushdock.timer import Timer

APP = "demo"
ENTRIES = [{"command": "python task.py", "schedule": "* * * * *"}, {"command": "worker", "schedule": "@daily"},
           {"command": "paused", "schedule": "@hourly", "maintenance": True}]


class FakeScheduler:
    name = "fake"

    def __init__(self) -> None:
        self.tasks: list[tuple[str, str, dict[str, str]]] = []
        self.status = 0
        self.gate: threading.Event | None = None

    def run_task(self, ctx, release, command, progress, *, timeout, label, commit_to=None) -> None:
        self.tasks.append((label, command, release.env))
        progress.step(f"Running the {label} command: {command}")
        progress.detail(f"out of {command}\nsecond line")
        if self.gate is not None:
            self.gate.wait(10)
        if self.status == 99:
            raise DeployFailed(f"{label} command did not finish within {timeout:g}s")
        if self.status:
            raise TaskFailed(f"{label} command failed with exit status {self.status}", status=self.status)


class Plugin:
    def __init__(self, sched: FakeScheduler) -> None:
        self.sched = sched

    @hookimpl
    def register_schedulers(self) -> dict[str, Any]:
        return {"fake": self.sched}


@pytest.fixture
def sched() -> FakeScheduler:
    return FakeScheduler()


@pytest.fixture
def fctx(tmp_path: Path, sched: FakeScheduler) -> Context:
    settings = Settings(data_dir=tmp_path / "data", scheduler="fake")
    bus = Bus(tmp_path / "data" / "plugins", extra_plugins=(Plugin(sched),), entry_points=False)
    ctx = Context(settings=settings, identity=Identity(name="tester"), bus_override=bus)
    ctx.state.create_app(APP)
    release = Release(app=APP, number=1, image="img", env={"A": "1"}, processes={"web": "", "worker": "run-worker"},
                      formation={"web": 1}, cron=ENTRIES)
    ctx.state.save_release(release)
    ctx.state.promote_release(release)
    ctx.state.set_env(APP, {"A": "2"})
    return ctx


def test_ids_are_stable_short_and_derived_from_app_command_and_schedule(fctx) -> None:
    jobs = cron.jobs(fctx, APP)
    assert [j.command for j in jobs] == ["python task.py", "worker", "paused"]
    assert [j.maintenance for j in jobs] == [False, False, True]
    ids = [j.id for j in jobs]
    assert len(set(ids)) == 3 and all(len(i) == 16 and i.isalnum() and i.islower() for i in ids)
    assert ids == [j.id for j in cron.jobs(fctx, APP)]
    assert cron.job_id(APP, "python task.py", "* * * * *") == ids[0]
    assert cron.job_id("other", "python task.py", "* * * * *") != ids[0]
    assert cron.job_id(APP, "python task.py", "*/1 * * * *") != ids[0]
    with pytest.raises(NotFound, match="demo has no cron job 'nope'"):
        cron.find(fctx, APP, "nope")


def test_run_uses_the_current_env_and_procfile_commands_and_is_recorded(fctx, sched) -> None:
    daily = cron.jobs(fctx, APP)[1]
    shown: list[str] = []
    assert cron.run(fctx, daily, echo=shown.append) == 0
    assert sched.tasks == [("cron", "run-worker", {"A": "2"})]  # the Procfile type's command, today's env
    assert shown == ["out of run-worker", "second line"]
    [row] = [r for r in cron.listing(fctx, APP) if r["id"] == daily.id]
    assert row["status"] == 0 and row["last_run"] > time.time() - 60 and row["next_run"] > time.time()
    lines = list(cron.log_lines(fctx, APP, follow=False, tail=10))
    assert lines == [f"cron.{daily.id}: out of run-worker", f"cron.{daily.id}: second line"]
    [event] = [e for e in fctx.state.read_events(10) if e["action"] == "cron"]
    assert event["job"] == daily.id and event["result"] == "ok" and event["release"] == "v1"

    sched.status = 3
    assert cron.run(fctx, daily) == 3
    assert [r["status"] for r in cron.listing(fctx, APP) if r["id"] == daily.id] == [3]
    assert fctx.state.read_events(1)[0]["result"] == "exit 3"
    sched.status = 99
    with pytest.raises(DeployFailed, match="did not finish"):
        cron.run(fctx, daily)
    assert fctx.state.read_events(1)[0]["result"] == "failed"
    [last] = cron.log_lines(fctx, APP, follow=False, tail=1)
    assert "error: cron command did not finish" in last


def test_a_running_job_is_not_started_again_by_a_tick_or_cron_run(fctx, sched) -> None:
    job = cron.jobs(fctx, APP)[0]
    sched.gate = threading.Event()
    first = threading.Thread(target=cron.run, args=(fctx, job))
    first.start()
    try:
        deadline = time.monotonic() + 5
        while not sched.tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert cron.run(fctx, job, wait=False) is None  # a tick: skipped
        with pytest.raises(Conflict, match="is running"):
            cron.run(fctx, job)  # cron:run: told so
        assert [r["status"] for r in cron.listing(fctx, APP) if r["id"] == job.id] == ["running"]
    finally:
        sched.gate.set()
        first.join(10)
    assert len(sched.tasks) == 1
    assert cron.run(fctx, job) == 0  # once it ended, it runs again
    cron._record(fctx, job, started=time.time(), finished=None, status=None)  # as a run whose process died
    assert [r["status"] for r in cron.listing(fctx, APP) if r["id"] == job.id] == ["interrupted"]


def test_the_timer_follows_releases_and_maintenance(fctx) -> None:
    timer = Timer()
    cron.sync(fctx, timer)
    ids = [j.id for j in cron.jobs(fctx, APP)]
    assert timer.names("cron:") == sorted(f"cron:{APP}:{i}" for i in ids[:2])  # the paused entry is not timed
    cron.set_maintenance(fctx, APP, True)
    cron.sync(fctx, timer)
    assert timer.names("cron:") == []
    assert all(r["maintenance"] and r["next_run"] is None for r in cron.listing(fctx, APP))
    cron.set_maintenance(fctx, APP, False)
    new = fctx.state.current_release(APP).with_(number=2, cron=[{"command": "other", "schedule": "@weekly"}])
    fctx.state.save_release(new)
    fctx.state.promote_release(new)
    cron.sync(fctx, timer)
    assert timer.names("cron:") == [f"cron:{APP}:{cron.job_id(APP, 'other', '@weekly')}"]
    fctx.state.destroy_app(APP)
    cron.sync(fctx, timer)
    assert timer.names("cron:") == []


def test_follow_shows_new_lines(fctx, monkeypatch) -> None:
    job = cron.jobs(fctx, APP)[0]
    lines = cron.log_lines(fctx, APP, follow=True, tail=0)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(next(lines) for _ in range(2)), daemon=True)
    # With tail=0 the follower starts at the log's end when it first runs: the job must write after that.
    # Its first wait for more (a sleep in the reader's thread, observed, not changed) is that moment.
    following, real_sleep = threading.Event(), time.sleep

    def sleep(seconds: float) -> None:
        if threading.current_thread() is reader:
            following.set()
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    reader.start()
    assert following.wait(10), "the follower never started waiting for lines"
    cron.run(fctx, job)
    reader.join(5)
    assert got == [f"cron.{job.id}: out of python task.py", f"cron.{job.id}: second line"]
