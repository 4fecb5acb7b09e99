"""Group commit of route changes across processes: a burst of changes costs one reload.

Every change is written to the proxy's queue folder, then the caller takes the proxy's flock. The
holder of the lock (the leader) commits every queued change at once, writes each other caller's
outcome to `results/`, and releases the lock; the callers that waited find their outcome there and
return without a reload of their own. A queued change whose process died is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from pushdock import errors
from pushdock.errors import PushdockError
from pushdock.state import atomic_write, exclusive_flock

RESULT_TTL = 3600.0  # outcomes nobody collected (their process died) are removed after this


@dataclass(frozen=True)
class Change:
    """One queued change: the app's new route (JSON), or None to stop routing it."""

    id: str
    app: str
    route: dict[str, Any] | None
    pid: int
    seq: int

    @classmethod
    def new(cls, app: str, route: dict[str, Any] | None) -> Change:
        return cls(uuid.uuid4().hex, app, route, os.getpid(), time.time_ns())


Outcome = PushdockError | None
Commit = Callable[[list[Change]], dict[str, Outcome]]


def _encode(outcome: Outcome) -> str:
    if outcome is None:
        return "{}"
    return json.dumps({"type": type(outcome).__name__, "message": outcome.message, "hint": outcome.hint})


def _decode(text: str) -> Outcome:
    raw = json.loads(text)
    if not raw:
        return None
    cls = getattr(errors, raw.get("type", ""), PushdockError)
    if not (isinstance(cls, type) and issubclass(cls, PushdockError)):
        cls = PushdockError
    return cls(raw["message"], hint=raw.get("hint"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Batcher:
    """The queue, results and lock of one proxy, all under `root`."""

    def __init__(self, root: Path, lock_timeout: float = 120.0) -> None:
        self.root = root
        self.queue = root / "queue"
        self.results = root / "results"
        self.lock_path = root / "lock"
        self.lock_timeout = lock_timeout

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The proxy's flock: one writer of its config at a time, across processes."""
        with exclusive_flock(self.lock_path, timeout=self.lock_timeout, busy="the proxy is busy", interval=0.005):
            yield

    def submit(self, changes: list[Change], commit: Commit) -> dict[str, Outcome]:
        """Queue `changes`, then commit them (with whatever else is queued) or collect their outcome."""
        if not changes:
            return {}
        first = changes[0]  # one file per submit: a batch of 1000 changes is one write, not 1000
        # not fsynced: a queued change means nothing after a crash (its caller died with it; see _pending)
        atomic_write(self.queue / f"{first.seq:020d}-{first.id}.json", json.dumps(
            [{"id": c.id, "app": c.app, "route": c.route, "pid": c.pid, "seq": c.seq} for c in changes]),
            durable=False)
        mine = {c.id for c in changes}
        outcomes: dict[str, Outcome] = {}
        with self.locked():
            outcomes.update(self._collect(mine))
            if len(outcomes) < len(mine):
                outcomes.update(self._lead(mine, commit))
        return outcomes

    def _collect(self, ids: set[str]) -> dict[str, Outcome]:
        found = {}
        for i in ids:
            path = self.results / i
            with contextlib.suppress(FileNotFoundError):
                found[i] = _decode(path.read_text())
                path.unlink()
        return found

    def _pending(self) -> list[tuple[Path, list[Change]]]:
        out = []
        for path in sorted(self.queue.glob("*.json")):
            try:
                raw = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                continue
            changes = [Change(r["id"], r["app"], r["route"], int(r["pid"]), int(r["seq"]))
                       for r in (raw if isinstance(raw, list) else [raw])]
            pid = changes[0].pid if changes else os.getpid()
            if pid != os.getpid() and not _alive(pid):
                logger.info("proxy changes of a dead process dropped", changes=len(changes), pid=pid)
                path.unlink(missing_ok=True)
                continue
            out.append((path, changes))
        return out

    def _lead(self, mine: set[str], commit: Commit) -> dict[str, Outcome]:
        pending = self._pending()
        batch = [c for _, changes in pending for c in changes]
        started = time.monotonic()
        try:
            outcomes = commit(batch)
        except PushdockError as e:
            outcomes = {c.id: e for c in batch}
        if len(pending) > 1:
            logger.debug("proxy changes committed together", submits=len(pending), changes=len(batch),
                         seconds=round(time.monotonic() - started, 3))
        self.results.mkdir(parents=True, exist_ok=True)
        ours = {}
        for path, changes in pending:
            for c in changes:
                if c.id in mine:
                    ours[c.id] = outcomes.get(c.id)
                else:
                    atomic_write(self.results / c.id, _encode(outcomes.get(c.id)), durable=False)
            path.unlink(missing_ok=True)
        self._expire()
        return ours

    def _expire(self) -> None:
        cutoff = time.time() - RESULT_TTL
        for path in self.results.glob("*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
