"""`serve`'s reconcile pass, in the background: the doors open at once, each app is reconciled when it can be.

A deploy worker outlives a stopped `serve` and keeps its app's lock until its deploy ends (up to the lock
timeout and more). Waiting for every lock before opening the doors would keep every app's pushes and
commands out meanwhile, so each app is tried without waiting: a busy one is tried again every
RETRY_INTERVAL until its lock frees (its deploy's own outcome first, then the reconcile). `pending()` is
what `/healthz` reports meanwhile.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from loguru import logger

from hooks import pipeline
from pushdock.errors import Conflict, PushdockError
from pushdock.progress import Progress

if TYPE_CHECKING:
    from pushdock.context import Context

RETRY_INTERVAL = 0.5  # seconds between tries of an app whose lock another process holds
STOP_TIMEOUT = 120.0  # serve stopping waits this long for the reconcile of one app under way

WAITING = "waiting for the app's lock"
QUEUED = "queued"
RUNNING = "reconciling"


class Reconciler:
    """Reconciles every app once, in a thread of its own; apps whose lock is held wait their turn."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.progress = Progress(lambda line: logger.info("reconcile output", line=line))
        self._state: dict[str, str] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pushdock-reconcile", daemon=True)

    def start(self) -> None:
        for message in pipeline.clean_dead_builds(self.ctx):  # quick: before any new build can start
            logger.info("reconciled", message=message)
        with self._mutex:
            self._state = dict.fromkeys(self.ctx.state.list_apps(), QUEUED)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT)

    def pending(self) -> dict[str, str]:
        """The apps not reconciled yet, and why: queued, waiting for the app's lock, reconciling."""
        with self._mutex:
            return dict(sorted(self._state.items()))

    def wait(self, timeout: float) -> bool:
        """Until every app is reconciled (True) or `timeout` s passed."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _set(self, app: str, what: str | None) -> None:
        with self._mutex:
            if what is None:
                self._state.pop(app, None)
            else:
                self._state[app] = what

    def _run(self) -> None:
        todo = list(self.pending())
        started = time.monotonic()
        while todo and not self._stop.is_set():
            todo = [app for app in todo if not self._stop.is_set() and not self._try(app)]
            if todo:
                self._stop.wait(RETRY_INTERVAL)
        if not todo:
            logger.info("reconcile done", seconds=round(time.monotonic() - started, 3))

    def _try(self, app: str) -> bool:
        """Reconcile `app` if its lock is free (True), else leave it for later (False)."""
        held: list[bool] = []
        was_waiting = self.pending().get(app) == WAITING
        try:
            messages = pipeline.reconcile_app(self.ctx, app, self.progress, timeout=0,
                                              on_wait=lambda: held.append(True),
                                              on_locked=lambda: self._set(app, RUNNING))
        except Conflict as e:
            if held:
                if not was_waiting:
                    logger.info("reconcile waits for the app's lock (a deploy under way)", app=app)
                self._set(app, WAITING)
                return False
            messages = [f"{app}: reconcile failed: {e}"]
        except PushdockError as e:
            messages = [f"{app}: reconcile failed: {e}"]
        except Exception:  # an app's surprise must not stop the others' reconcile, nor serve
            logger.exception("reconcile failed", app=app)
            messages = [f"{app}: reconcile failed (see the log)"]
        for message in messages:
            logger.info("reconciled", message=message)
        self._set(app, None)
        return True
