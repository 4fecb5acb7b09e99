"""The timer (pushdock/timer.py): tick logic on an injected clock, overlap protection with real threads,
and cron expressions checked with one-line reasons."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest

from pushdock.errors import UsageError
from pushdock.timer import Timer, cron_expression, next_cron


def at(hh: int, mm: int, ss: int = 0) -> float:
    """An epoch time today (host time zone), as cron sees it."""
    return datetime.now().replace(hour=hh, minute=mm, second=ss, microsecond=0).timestamp()


def settle(timer: Timer, *names: str) -> None:
    """Wait until the named jobs' runs have ended (a worker marks a run over just after its function returns)."""
    deadline = time.monotonic() + 5
    while any(timer.running(n) for n in names) and time.monotonic() < deadline:
        time.sleep(0.01)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_every_minute_runs_once_per_tick_and_missed_ticks_are_not_replayed() -> None:
    clock = Clock(at(10, 0, 30))
    timer = Timer(clock=clock)
    ran: list[float] = []
    done = threading.Semaphore(0)
    timer.add("job", lambda: (ran.append(clock.t), done.release()), cron="* * * * *")
    timer.start(loop=False)  # the test drives the ticks
    try:
        assert timer.next_run("job") == at(10, 1)
        assert timer.run_due(at(10, 0, 59)) == []
        assert timer.run_due(at(10, 1, 0)) == ["job"]
        assert done.acquire(timeout=5)
        settle(timer, "job")
        assert timer.run_due(at(10, 1, 0)) == [] and timer.run_due(at(10, 1, 59)) == []  # once per tick
        assert timer.next_run("job") == at(10, 2)
        # serve was down (or the host asleep) for ten minutes: one run now, none for the ticks missed
        assert timer.run_due(at(10, 12, 5)) == ["job"]
        assert done.acquire(timeout=5)
        assert timer.run_due(at(10, 12, 6)) == []
        assert timer.next_run("job") == at(10, 13)
        assert len(ran) == 2
    finally:
        timer.stop()


def test_re_adding_keeps_the_tick_and_a_new_schedule_moves_it() -> None:
    clock = Clock(at(10, 0, 30))
    timer = Timer(clock=clock)
    timer.add("job", lambda: None, cron="*/5 * * * *")
    assert timer.next_run("job") == at(10, 5)
    clock.t = at(10, 3)
    timer.add("job", lambda: None, cron="*/5 * * * *")
    assert timer.next_run("job") == at(10, 5)
    timer.add("job", lambda: None, cron="@hourly")
    assert timer.next_run("job") == at(11, 0)
    timer.add("beat", lambda: None, every=7)
    assert timer.next_run("beat") == at(10, 3, 7)
    assert timer.names() == ["beat", "job"]
    timer.remove("job")
    assert timer.names() == ["beat"] and timer.next_run("job") is None


def until(condition, what: str, state: object, timeout: float = 30.0) -> None:
    """Wait (bounded) for `condition`, an end condition of the threads under test; fail with `what` after."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: {state}"
        time.sleep(0.01)


def test_a_long_job_never_overlaps_itself() -> None:
    """A job still running at its next ticks: those ticks are skipped, not queued (it starts again only once it
    ended), while another job keeps ticking beside it. Real threads and the real loop; the long job runs until
    the test lets it end, so no count depends on how fast the machine is."""
    timer = Timer(workers=4)
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "runs": 0, "other": 0}
    go_on = threading.Event()

    def long_job() -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            state["runs"] += 1
        go_on.wait(30)
        with lock:
            state["now"] -= 1

    def other() -> None:
        with lock:
            state["other"] += 1

    timer.add("long", long_job, every=0.05)
    timer.add("other", other, every=0.05)
    timer.start()
    try:
        until(lambda: state["runs"] == 1, "the long job never started", state)
        base = state["other"]
        until(lambda: state["other"] >= base + 10, "the long job held the clock up", state)
        assert state["runs"] == 1 and timer.running("long"), state  # ten of its ticks went by: all skipped
        go_on.set()
        until(lambda: state["runs"] >= 2, "the long job did not run again once it ended", state)
    finally:
        go_on.set()
        timer.stop()
    assert state["max"] == 1, state


def test_a_failing_job_keeps_the_clock_going() -> None:
    timer = Timer()
    calls = []

    def boom() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    timer.add("boom", boom, every=0.05)
    timer.start()
    try:
        until(lambda: len(calls) >= 3, "the job did not run again after it failed", calls)
    finally:
        timer.stop()


@pytest.mark.parametrize(("schedule", "expected"), [
    ("* * * * *", "* * * * *"), ("*/5  *  * * *", "*/5 * * * *"), ("@daily", "0 0 * * *"),
    ("@hourly", "0 * * * *"), ("@weekly", "0 0 * * 0"), ("0 3 * * mon-fri", "0 3 * * mon-fri"),
])
def test_good_schedules(schedule: str, expected: str) -> None:
    assert cron_expression(schedule) == expected


@pytest.mark.parametrize(("schedule", "reason"), [
    ("* * * *", "must have five fields"), ("* * * * * *", "must have five fields"), ("", "must have five fields"),
    ("61 * * * *", "invalid schedule"), ("* * 32 * *", "invalid schedule"), ("@reboot", "unknown schedule"),
    ("@every 5m", "unknown schedule"), ("H * * * *", "invalid schedule"), ("a b c d e", "invalid schedule"),
    ("0 0 30 2 *", "never fires"), ("32 1,2,3 5W 1-3 0", "never fires"),
])
def test_bad_schedules_give_one_line_reasons(schedule: str, reason: str) -> None:
    with pytest.raises(UsageError) as e:
        cron_expression(schedule)
    assert reason in e.value.message and "\n" not in e.value.message


def test_next_cron_in_the_host_time_zone() -> None:
    assert next_cron("0 3 * * *", at(2, 59, 59)) == at(3, 0)
    assert at(3, 0) < next_cron("0 3 * * *", at(3, 0)) <= at(3, 0) + 90000  # strictly after: tomorrow's
    with pytest.raises(ValueError):
        Timer().add("x", lambda: None)


def test_a_schedule_without_a_next_tick_is_dropped_not_looped_on() -> None:
    """A job whose schedule has no tick left stops being due; the other jobs keep their ticks."""
    from pushdock.timer import Every

    class Once(Every):
        def next_after(self, t: float) -> float:
            if t > at(10, 0, 5):
                raise ValueError("failed to find next date")
            return t + self.seconds

    timer = Timer(clock=Clock(at(10, 0)))
    timer.add("fine", lambda: None, every=1)
    timer.add("once", lambda: None, every=1)
    timer._jobs["once"].schedule = Once(1)  # a schedule type of its own: no public way to build one that ends
    timer.start(loop=False)
    try:
        assert timer.run_due(at(10, 0, 10)) == ["fine", "once"]
        assert timer.next_run("once") == float("inf") and timer.next_run("fine") == at(10, 0, 11)
        settle(timer, "fine", "once")
        assert timer.run_due(at(10, 0, 20)) == ["fine"]
    finally:
        timer.stop()
