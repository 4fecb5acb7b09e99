"""App cron jobs: app.json `cron` entries of the current release, run by serve's timer or `cron:run`.

A job runs as a one-off task of the app's current release (the scheduler's `run_task`: the same
container path as the release phase, with the app's env as configured now), on docker-local and swarm.
A job never overlaps itself, across processes too: a run holds the job's flock, so a tick that finds
it held (a long run, a `cron:run` under way) is skipped. Output goes to the app's cron log
(`logs APP -p cron`); each run is an event (`cron`, door `cron` when serve ran it) and its start,
end and exit status are kept for `cron:list`. Ids are Dokku's recipe, hashed: the entry's app, command
and schedule joined by `===`, of which Dokku base36-encodes the whole text; here a SHA-256 digest, so ids
stay short whatever the command.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from pushdock.errors import Conflict, NotFound, PushdockError, TaskFailed
from pushdock.progress import Progress
from pushdock.state import exclusive_flock, tail_lines
from pushdock.timer import cron_expression, next_cron

if TYPE_CHECKING:
    from collections.abc import Callable

    from pushdock.context import Context
    from pushdock.state import Release
    from pushdock.timer import Timer

JOB_TIMEOUT = 24 * 3600.0  # seconds: a job still running after a day is killed (and its tick skipped meanwhile)
LOG_MAX_BYTES = 4 << 20  # cron.log is rotated past this size into cron.log.1
TIMER_PREFIX = "cron:"
FOLLOW_POLL = 0.5
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Job:
    app: str
    id: str
    command: str
    schedule: str
    maintenance: bool = False  # paused in app.json (`"maintenance": true`)


def job_id(app: str, command: str, schedule: str) -> str:
    """Stable id of an entry: base36 of the first 10 bytes of SHA-256(`APP===COMMAND===SCHEDULE`)."""
    n = int.from_bytes(hashlib.sha256(f"{app}==={command}==={schedule}".encode()).digest()[:10], "big")
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = ALPHABET[r] + out
    return out.rjust(16, "0")


def jobs(ctx: Context, app: str) -> list[Job]:
    """The jobs of the app's current release (none before its first deploy)."""
    current = ctx.state.current_release(app)
    if current is None:
        return []
    return [Job(app, job_id(app, e["command"], e["schedule"]), e["command"], e["schedule"],
                bool(e.get("maintenance"))) for e in current.cron]


def find(ctx: Context, app: str, ident: str) -> Job:
    for job in jobs(ctx, app):
        if job.id == ident:
            return job
    raise NotFound(f"{app} has no cron job {ident[:40]!r} (see `cron:list {app}`)")


# -- maintenance and the record of runs ----------------------------------------------------------------
def paused(ctx: Context, app: str) -> bool:
    return ctx.state.get("cron", app, "maintenance") == "on"


def set_maintenance(ctx: Context, app: str, on: bool) -> None:
    if on:
        ctx.state.set("cron", app, "maintenance", "on")
    else:
        ctx.state.delete("cron", app, "maintenance")


def runs(ctx: Context, app: str) -> dict[str, dict[str, Any]]:
    """job id -> {"started", "finished", "status"} of its last run (status None while it runs)."""
    return dict(ctx.state.get_json("cron", app, "runs", {}))


def _record(ctx: Context, job: Job, **fields: Any) -> None:
    with exclusive_flock(ctx.state.path("locks", f"cron-{job.app}.lock"), timeout=30, busy="cron record busy"):
        record = runs(ctx, job.app)
        record[job.id] = {**({} if "started" in fields else record.get(job.id, {})), **fields}
        known = {j.id for j in jobs(ctx, job.app)} | {job.id}
        ctx.state.set_json("cron", job.app, "runs", {k: v for k, v in record.items() if k in known})


def next_run(job: Job, after: float | None = None) -> float:
    return next_cron(cron_expression(job.schedule), time.time() if after is None else after)


def listing(ctx: Context, app: str) -> list[dict[str, Any]]:
    """One row per job: id, schedule, command, last run, its exit status, next run (None when paused)."""
    record, stopped = runs(ctx, app), paused(ctx, app)
    rows = []
    for job in jobs(ctx, app):
        last = record.get(job.id, {})
        status = last.get("status")
        if last and not last.get("finished"):
            status = "running" if _running(ctx, job) else "interrupted"  # its process died mid-run
        rows.append({
            "id": job.id, "schedule": job.schedule, "command": job.command,
            "last_run": last.get("started"), "status": status,
            "next_run": None if stopped or job.maintenance else next_run(job),
            "maintenance": stopped or job.maintenance,
        })
    return rows


# -- running a job -------------------------------------------------------------------------------------
def _lock_path(ctx: Context, job: Job) -> Path:
    return ctx.state.path("locks", f"cron-{job.app}-{job.id}.lock")


def _running(ctx: Context, job: Job) -> bool:
    """Whether a run of `job` holds its lock now (in any process)."""
    try:
        with exclusive_flock(_lock_path(ctx, job), timeout=0, busy="running"):
            return False
    except Conflict:
        return True


def run(ctx: Context, job: Job, *, echo: Callable[[str], None] | None = None, wait: bool = True) -> int | None:
    """Run `job` once now in a one-off container of the current release; its exit status.

    When the job is already running: Conflict, or with `wait` False (a tick) None and nothing run (the
    tick is skipped). Output goes to the cron log (and to `echo`). PushdockError if it could not run.
    """
    held = contextlib.ExitStack()
    try:
        # A second of patience: `cron:list` probes the lock for an instant (_running); a run holds it throughout.
        held.enter_context(exclusive_flock(_lock_path(ctx, job), timeout=1.0, interval=0.05,
                                           busy=f"cron job {job.id} of {job.app} is running"))
    except Conflict:
        if wait:
            raise
        logger.warning("cron job still running: this tick is skipped", app=job.app, job=job.id)
        return None
    with held:
        return _run_locked(ctx, job, echo)


def _run_locked(ctx: Context, job: Job, echo: Callable[[str], None] | None) -> int:
    current = ctx.state.current_release(job.app)
    if current is None:
        raise NotFound(f"{job.app} has not been deployed yet: nothing to run")
    release = current.with_(env=ctx.state.get_env(job.app))  # the env as configured now, as `run` has it
    out = _CronOutput(ctx, job, echo)
    started = time.time()
    _record(ctx, job, started=started, finished=None, status=None)
    failure: PushdockError | None = None
    try:
        ctx.scheduler(job.app).run_task(ctx, release, _command(release, job.command), out,
                                        timeout=JOB_TIMEOUT, label="cron")
        status = 0
    except TaskFailed as e:
        status = e.status
    except PushdockError as e:  # it did not start, or it timed out
        status, failure = -1, e
        _append(out.path, f"{_stamp()} {out.prefix}error: {e.message}")
    finally:
        out.close()
    _record(ctx, job, finished=time.time(), status=status)
    result = "ok" if status == 0 else ("failed" if failure else f"exit {status}")
    ctx.event("cron", app=job.app, result=result, started=started, job=job.id, release=release.name,
              command=job.command[:120], **({"reason": failure.message} if failure else {}))
    if failure is not None:
        raise failure
    return status


def tick(ctx: Context, job: Job) -> None:
    """A timer tick of `job`: run it unless it still runs; a failure to run is logged (and is an event)."""
    try:
        run(ctx, job, wait=False)
    except PushdockError as e:
        logger.warning("cron job did not run", app=job.app, job=job.id, reason=e.message)


def _command(release: Release, command: str) -> str:
    """A Procfile process type's name runs that type's command (Dokku: commands can be Procfile entries)."""
    return (release.processes.get(command) or command).strip() if command in release.processes else command


class _CronOutput(Progress):
    """A job's output: each line, stamped and prefixed `cron.ID:`, appended to the app's cron log."""

    def __init__(self, ctx: Context, job: Job, echo: Callable[[str], None] | None) -> None:
        super().__init__(*([echo] if echo else []))
        self.path = log_path(ctx, job.app)
        self.prefix = f"cron.{job.id}: "

    def line(self, text: str) -> None:
        for raw in text.splitlines() or [""]:
            _append(self.path, f"{_stamp()} {self.prefix}{raw}")
        super().line(text)

    def step(self, text: str) -> None:  # the "Running the cron command" headline: the log, not the output
        logger.info("cron job started", line=text)

    def detail(self, text: str) -> None:
        self.line(text)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def log_path(ctx: Context, app: str) -> Path:
    return ctx.state.path("logs", app, "cron.log")


def _append(path: Path, line: str) -> None:
    """One O_APPEND write per line (jobs running at once never mix their lines); rotated past LOG_MAX_BYTES."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > LOG_MAX_BYTES:
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, path.with_name("cron.log.1"))


# -- `logs APP -p cron` ---------------------------------------------------------------------------------
def log_lines(ctx: Context, app: str, *, follow: bool, tail: int | None) -> Iterator[str]:
    """`cron.ID: text` lines of the app's jobs, oldest first; with `follow`, then new ones as they come."""
    path = log_path(ctx, app)
    for raw in tail_lines(path, 100_000 if tail is None else tail) if tail != 0 else []:
        yield _text(raw)
    if not follow:
        return
    try:
        f = open(path, "rb")
        f.seek(0, os.SEEK_END)
    except FileNotFoundError:
        f = None
    buf = b""
    try:
        while True:
            chunk = f.read() if f is not None else b""
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    if raw.strip():
                        yield _text(raw)
                continue
            time.sleep(FOLLOW_POLL)
            if _replaced(f, path):  # rotated (or created): read the new file from its start
                if f is not None:
                    f.close()
                f, buf = open(path, "rb"), b""
    finally:
        if f is not None:
            f.close()


def _replaced(f: Any, path: Path) -> bool:
    try:
        return f is None or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").partition(" ")[2]


# -- serve: keep the timer's cron jobs in step with the apps ------------------------------------------------
def wanted(ctx: Context) -> dict[str, Job]:
    """timer job name -> Job, for every job of every app that should tick now (not paused)."""
    out = {}
    for app in ctx.state.list_apps():
        try:
            if paused(ctx, app):
                continue
            for job in jobs(ctx, app):
                if not job.maintenance:
                    out[f"{TIMER_PREFIX}{app}:{job.id}"] = job
        except (PushdockError, OSError, ValueError) as e:  # one app's unreadable state never stops the others
            logger.warning("cron jobs of an app not read", app=app, error=str(e))
    return out


def sync(ctx: Context, timer: Timer) -> None:
    """Register the jobs that should tick and remove the others (a deploy, `cron:set`, a destroyed app)."""
    want = wanted(ctx)
    for name in timer.names(TIMER_PREFIX):
        if name not in want:
            timer.remove(name)
            logger.info("cron job removed", job=name)
    known = set(timer.names(TIMER_PREFIX))
    for name, job in want.items():
        try:
            timer.add(name, lambda job=job: tick(ctx, job), cron=job.schedule)  # type: ignore[misc]
        except PushdockError as e:  # checked at push time; a release recorded before that check is skipped
            logger.warning("cron job not scheduled", app=job.app, job=job.id, reason=e.message)
            continue
        if name not in known:
            logger.info("cron job scheduled", app=job.app, job=job.id, schedule=job.schedule)
