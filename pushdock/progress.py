"""Build and deploy output for the pusher: not logging. Goes to the sinks (sideband, stderr) and the deploy log."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

Job = Callable[["Progress"], None]


class Progress:
    """A line sink. Sinks are best effort: a vanished client never aborts a deploy."""

    def __init__(self, *sinks: Callable[[str], None], logfile: Path | None = None, header: bool = True) -> None:
        self.sinks = list(sinks)
        self._log = None
        # How long each stage of a deploy took (receive, build, release, start, ready, switch, retire), in order.
        self.stages: dict[str, float] = {}
        # None: `later` runs a job at once; a list: the owner runs the jobs once the caller was answered.
        self.deferred: list[Job] | None = None
        if logfile is not None:
            logfile.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(logfile, "a", buffering=1)
            if header:
                self._log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')}\n")

    def line(self, text: str) -> None:
        for raw in text.splitlines() or [""]:
            if self._log is not None:
                self._log.write(raw + "\n")
            for sink in list(self.sinks):
                try:
                    sink(raw)
                except Exception:  # the client went away: keep the deploy going, stop writing to it
                    self.sinks.remove(sink)

    def step(self, text: str) -> None:
        """A headline: `-----> text` as Heroku and Dokku print them."""
        self.line(f"-----> {text}")

    def detail(self, text: str) -> None:
        for raw in text.splitlines() or [""]:
            self.line(f"       {raw}")

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage of the deploy (added to what the stage took already)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.add_stage(name, time.monotonic() - started)

    def add_stage(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds

    def stage_times(self, pending: str | None = None) -> str:
        """`Stage times: receive 0.12 s, build 0.40 s, ... (total 1.20 s)`; `pending` names a stage still running."""
        parts = [f"{name} {seconds:.2f} s" for name, seconds in self.stages.items()]
        if pending is not None:
            parts.append(f"{pending}: after the push")
        return f"Stage times: {', '.join(parts)} (total {sum(self.stages.values()):.2f} s)"

    def later(self, job: Job) -> None:
        """Work that must not hold the caller (retiring old containers): run now, or, when the owner collects
        jobs (a push: `deferred` is a list), once the pusher has its answer."""
        if self.deferred is None:
            job(self)
        else:
            self.deferred.append(job)

    def close(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None


NULL = Progress()
