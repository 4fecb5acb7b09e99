"""Build and deploy output for the pusher: not logging. Goes to the sinks (sideband, stderr) and the deploy log."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path


class Progress:
    """A line sink. Sinks are best effort: a vanished client never aborts a deploy."""

    def __init__(self, *sinks: Callable[[str], None], logfile: Path | None = None) -> None:
        self.sinks = list(sinks)
        self._log = None
        if logfile is not None:
            logfile.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(logfile, "a", buffering=1)
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

    def close(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None


NULL = Progress()
