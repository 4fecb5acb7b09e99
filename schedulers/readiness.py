"""Readiness of a freshly started instance.

Web: HTTP GET on the published port until two consecutive answers below 500 (a 404 is an answer:
the app listens). A TCP connect proves nothing here: docker-proxy accepts on the published port
before the app listens, then drops the connection (research/proxies.md §4: 7,552 x 502 in 2 s
without this check). Other processes: still running, never restarted, after a short settle time.
Then the release's app.json healthchecks of the process type (schedulers/healthchecks.py).
`checks:skip` replaces all of this with "the container runs"; `checks:set APP type uptime` with Dokku's
default check: every instance, web too, must still run, never restarted, `wait` seconds (10) after start.
A web instance that never answers is not left a mystery: the reason names the TCP ports it listens on
(schedulers/listening.py), e.g. a port hard-coded instead of $PORT, or 127.0.0.1 instead of 0.0.0.0.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pushdock.routing import Upstream
from schedulers import engine as eng
from schedulers.engine import Aborted, NotReady, Started
from schedulers.healthchecks import run_all
from schedulers.listening import explain

if TYPE_CHECKING:
    from pushdock.checks import Healthcheck
    from pushdock.context import Context

READY_PATH = "/"
PROBE_TIMEOUT = 2.0  # seconds per readiness request
PROBE_INTERVAL = 0.2
# docker-local: until a web instance first answers, it is probed this often (it answers ~0.2 s after its start:
# every 0.2 s cost ~0.1 s of each deploy, issue 22); the confirming answer comes after CONFIRM_INTERVAL: the app
# answered already (it listens), the second answer and the container state read between them show it did not
# fall over at once (100 ms here was nearly all of a deploy's ready stage, issue 22)
FIRST_PROBE_INTERVAL = 0.05
CONFIRM_INTERVAL = 0.02
PROBE_SUCCESSES = 2  # consecutive answers < 500 before a web instance counts as ready
WORKER_SETTLE = 1.5  # a non-web instance must still run after this long


def wait_ready(
    ctx: Context, s: Started, abort: threading.Event, checks: Sequence[Healthcheck] = (), *, skip: bool = False,
    uptime: float | None = None,
) -> list[str]:
    """Return when the instance is ready and passed `checks` (notes to show); NotReady if it exits, times out or
    fails a check; Aborted if told. With `skip`, ready means running; with `uptime`, running for that long."""
    if skip:
        s.container.reload()
        if (why := eng.exit_reason(s.container)) is not None:
            raise NotReady(f"{s.slot} {why}", eng.last_log_lines(s.container))
        return ["checks skipped"]
    if uptime is not None:
        _uptime_ready(s, abort, uptime)
        notes = [f"still running after {uptime:g}s"]
    else:
        _default_ready(ctx, s, abort)
        notes = []
    if not checks:
        return notes
    return notes + run_all(s, checks, abort)


def _uptime_ready(s: Started, abort: threading.Event, seconds: float) -> None:
    """Dokku's default check: the container still runs, never restarted, `seconds` after it started."""
    deadline = time.monotonic() + seconds
    while True:
        s.container.reload()
        if (why := eng.exit_reason(s.container)) is not None:
            raise NotReady(f"{s.slot} {why} within the {seconds:g}s uptime check", eng.last_log_lines(s.container))
        if time.monotonic() >= deadline:
            return
        if abort.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
            raise Aborted


def _default_ready(ctx: Context, s: Started, abort: threading.Event) -> None:
    timeout = ctx.settings.ready_timeout
    deadline = time.monotonic() + timeout
    successes = 0
    settle = time.monotonic() + WORKER_SETTLE
    while True:
        if abort.is_set():
            raise Aborted
        if s.upstream is not None:
            status = probe(s.upstream, READY_PATH, min(PROBE_TIMEOUT, max(0.1, deadline - time.monotonic())))
            successes = successes + 1 if status is not None and status < 500 else 0
            if successes >= PROBE_SUCCESSES:
                return
        s.container.reload()
        why = eng.exit_reason(s.container)
        if why is not None:
            raise NotReady(f"{s.slot} {why}", eng.last_log_lines(s.container))
        if s.upstream is None and time.monotonic() >= settle:
            return
        if time.monotonic() >= deadline:
            raise NotReady(_silent_reason(s, timeout), eng.last_log_lines(s.container))
        abort.wait(CONFIRM_INTERVAL if successes else FIRST_PROBE_INTERVAL if s.upstream is not None
                   else PROBE_INTERVAL)


def _silent_reason(s: Started, timeout: float) -> str:
    """One line: the web instance never answered HTTP on $PORT, and what it listens on instead."""
    port = _container_port(s.container)
    head = f"{s.slot} did not answer HTTP on PORT={port} within {timeout:g}s"
    return f"{head}: {explain(s.container, port, s.container.labels.get('pushdock.app', 'APP'))}"


def answers(upstream: Upstream, timeout: float) -> bool:
    """One readiness probe: does the instance answer HTTP below 500 now?"""
    status = probe(upstream, READY_PATH, timeout)
    return status is not None and status < 500


def probe(upstream: Upstream, path: str, timeout: float) -> int | None:
    """HTTP status of GET path, or None when nothing answered."""
    conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "pushdock-readiness", "Connection": "close"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _container_port(container: Any) -> str:
    env = dict(e.partition("=")[::2] for e in (container.attrs.get("Config") or {}).get("Env") or [])
    if env.get("PORT", "").isdigit():
        return str(env["PORT"])
    exposed = (container.attrs.get("Config") or {}).get("ExposedPorts") or {}
    return next(iter(exposed), "?/tcp").split("/")[0]
