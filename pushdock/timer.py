"""The one clock of `pushdock serve`: named periodic jobs on a cron expression or an interval.

App cron jobs run on it, and so will scheduled backups and certificate renewals. A job is a name, a
schedule and a function; due jobs run on a small thread pool. A job never overlaps itself: when it is
still running at its next tick, that tick is skipped (and logged), not queued. Ticks missed while
nothing ran (serve down, the host asleep) are not replayed: after a run, the next tick is the first one
after *now*. The clock is injectable so tick logic is testable without waiting (`run_due(now)`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from loguru import logger

from pushdock.errors import UsageError

# Dokku's (robfig/cron's) descriptors; @reboot has no meaning for a job that serve restarts with.
DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
               "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
MAX_WAIT = 1.0  # seconds the loop sleeps at most: a job added meanwhile or a clock step is seen soon


def cron_expression(schedule: str) -> str:
    """`schedule` as five cron fields (descriptors expanded); UsageError with the reason if it is not one."""
    from croniter import croniter  # noqa: PLC0415 -- start-up: croniter loads when first used
    from croniter.croniter import CroniterBadDateError, CroniterError  # noqa: PLC0415 -- start-up: croniter loads when first used

    text = schedule.strip() if isinstance(schedule, str) else ""
    if text.startswith("@"):
        if text not in DESCRIPTORS:
            raise UsageError(f"unknown schedule {text[:40]!r} (use five cron fields or one of "
                             f"{', '.join(DESCRIPTORS)})")
        return DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != 5:
        raise UsageError(f"schedule {text[:60]!r} must have five fields (minute hour day month weekday), "
                         f"not {len(fields)}")
    try:
        croniter(" ".join(fields), datetime.now().astimezone()).get_next(float)  # parsed, and it fires some day
    except CroniterBadDateError:
        raise UsageError(f"schedule {text[:60]!r} never fires") from None
    except (CroniterError, ValueError) as e:
        raise UsageError(f"invalid schedule {text[:60]!r}: {str(e).splitlines()[0][:120]}") from None
    return " ".join(fields)


def next_cron(expression: str, after: float) -> float:
    """The first tick of a five-field expression strictly after `after` (epoch seconds), in the host's time zone."""
    from croniter import croniter  # noqa: PLC0415 -- start-up: croniter loads when first used

    start = datetime.fromtimestamp(after).astimezone()
    return float(croniter(expression, start).get_next(float))


@dataclass(frozen=True)
class Cron:
    """Runs at the ticks of a cron expression (five fields or a descriptor such as @daily)."""

    schedule: str

    def next_after(self, t: float) -> float:
        return next_cron(cron_expression(self.schedule), t)


@dataclass(frozen=True)
class Every:
    """Runs every `seconds`, the first time `seconds` after it is added."""

    seconds: float

    def next_after(self, t: float) -> float:
        return t + self.seconds


Schedule = Cron | Every


@dataclass
class _Job:
    name: str
    schedule: Schedule
    fn: Callable[[], object]
    due: float


class Timer:
    """Named periodic jobs on a thread pool; `start()` runs the loop in a thread, `stop()` ends it.

    The pool's threads are daemons: a job under way (a cron container can run for hours) never keeps
    serve from exiting. Overlap protection is by name, so it holds across a job's re-scheduling.
    """

    def __init__(self, *, workers: int = 4, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.workers = workers
        self._jobs: dict[str, _Job] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[str, Callable[[], object]] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- jobs -----------------------------------------------------------------------------------------
    def add(self, name: str, fn: Callable[[], object], *, cron: str | None = None,
            every: float | None = None) -> None:
        """Register (or re-schedule) job `name`. Re-adding it with the same schedule keeps its next tick;
        a job being replaced while it runs finishes that run and is never started twice meanwhile."""
        if (cron is None) == (every is None):
            raise ValueError("give a job either cron= or every=")
        schedule: Schedule = Cron(cron) if cron is not None else Every(float(every or 0))
        if isinstance(schedule, Cron):
            cron_expression(schedule.schedule)  # a bad expression fails here, not at its first tick
        with self._lock:
            old = self._jobs.get(name)
            if old is not None and old.schedule == schedule:
                old.fn = fn
                return
            self._jobs[name] = _Job(name, schedule, fn, due=schedule.next_after(self.clock()))

    def remove(self, name: str) -> None:
        with self._lock:
            self._jobs.pop(name, None)

    def names(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(n for n in self._jobs if n.startswith(prefix))

    def next_run(self, name: str) -> float | None:
        with self._lock:
            job = self._jobs.get(name)
            return None if job is None else job.due

    def running(self, name: str) -> bool:
        with self._lock:
            return name in self._running

    # -- ticks ----------------------------------------------------------------------------------------
    def run_due(self, now: float | None = None) -> list[str]:
        """Start every job whose tick has come (on the pool); the names started. Called by the loop."""
        now = self.clock() if now is None else now
        started = []
        with self._lock:
            for job in self._jobs.values():
                if job.due > now:
                    continue
                try:
                    job.due = job.schedule.next_after(max(now, job.due))
                except Exception as e:  # no tick left (a date that never comes again): never due, never in a loop
                    logger.error("job has no next run: not scheduled again", job=job.name, error=str(e))
                    job.due = float("inf")
                if job.name in self._running:
                    logger.warning("job still running: this tick is skipped", job=job.name)
                    continue
                self._running.add(job.name)
                started.append(job.name)
                self._queue.put((job.name, job.fn))
        return started

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            name, fn = item
            try:
                fn()
            except Exception:  # a job's failure is its own: log it, keep the clock going
                logger.exception("timer job failed", job=name)
            finally:
                with self._lock:
                    self._running.discard(name)

    def seconds_to_next(self, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        with self._lock:
            due = min((j.due for j in self._jobs.values()), default=now + MAX_WAIT)
        return max(0.0, min(MAX_WAIT, due - now))

    # -- the loop -------------------------------------------------------------------------------------
    def start(self, *, loop: bool = True) -> None:
        """Start the pool, and (unless `loop=False`: a test drives `run_due` itself) the ticking loop."""
        self._threads = [threading.Thread(target=self._work, name=f"pushdock-timer-{i}", daemon=True)
                         for i in range(self.workers)]
        if loop:
            self._threads.append(threading.Thread(target=self._loop, name="pushdock-timer", daemon=True))
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:
                logger.exception("timer tick failed")
            self._stop.wait(self.seconds_to_next())

    def stop(self, wait: float = 5.0) -> None:
        """End the loop and the pool; jobs under way get `wait` seconds in all to finish, then are left."""
        self._stop.set()
        for _ in range(self.workers):
            self._queue.put(None)
        deadline = time.monotonic() + wait
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
