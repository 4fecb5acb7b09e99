"""app.json healthchecks (Dokku's format) on a docker-local instance, after its default readiness passed.

path: GET on the published port, passing on a status below 400 whose body contains `content` (if
given); command: run in the container (docker exec), passing on exit status 0; uptime: the container
has run that long without a restart. Each check waits `initialDelay`, then tries `attempts` times,
`wait` seconds apart, each try bounded by `timeout`. A failure fails the instance (NotReady), unless
the check says `warn`: then it is reported and the deploy goes on.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pushdock.checks import Healthcheck, healthchecks_of
from pushdock.errors import PushdockError
from schedulers import engine as eng
from schedulers.engine import Aborted, NotReady, Started

if TYPE_CHECKING:
    from pushdock.routing import Upstream
    from pushdock.state import Release

MAX_BODY = 1024 * 1024


def for_process(release: Release, process: str) -> list[Healthcheck]:
    return healthchecks_of(release.checks, process)


def validate(release: Release) -> None:
    """Checks that cannot work with this release fail before anything starts (PushdockError)."""
    port = eng.container_port(release)
    for process in release.formation:
        for h in for_process(release, process):
            if h.path is not None and h.port is not None and h.port != port:
                raise PushdockError(f"app.json healthcheck {h.name!r} of {process} is on port {h.port}, but the "
                                    f"web process listens on {port} (PORT): checks reach only that port")


def run_all(s: Started, checks: Sequence[Healthcheck], abort: threading.Event) -> list[str]:
    """Run `checks` in order against a ready instance; returns notes (passed, warned). NotReady on a failure."""

    notes = []
    for h in checks:
        if abort.wait(h.initial_delay) if h.initial_delay else abort.is_set():
            raise Aborted
        why = ""
        for attempt in range(1, h.attempts + 1):
            why = _attempt(s, h, abort)
            if not why:
                notes.append(f"check {h.name} passed")
                break
            s.container.reload()
            if (died := eng.exit_reason(s.container)) is not None:
                raise NotReady(f"{s.slot} {died}", eng.last_log_lines(s.container))
            if attempt < h.attempts and abort.wait(h.wait):
                raise Aborted
        else:
            message = f"{s.slot} failed check {h.name}: {why} ({h.attempts} attempt{'s' if h.attempts != 1 else ''})"
            if not h.warn:
                raise NotReady(message, eng.last_log_lines(s.container))
            notes.append(f"warning: {message}")
    return notes


def _attempt(s: Started, h: Healthcheck, abort: threading.Event) -> str:
    """'' when the check passes, else why it did not."""
    if h.path is not None:
        if s.upstream is None:
            return "the instance publishes no port"
        return http_check(s.upstream, h.path, h.content, h.timeout)
    if h.command is not None:
        return _command_check(s.container, list(h.command), h.timeout)
    return _uptime_check(s.container, float(h.uptime or 0), abort)


def http_check(upstream: Upstream, path: str, content: str | None, timeout: float) -> str:
    conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "pushdock-healthcheck", "Connection": "close"})
        resp = conn.getresponse()
        body = resp.read(MAX_BODY)
    except TimeoutError:
        return f"no answer within {timeout:g}s"
    except (OSError, http.client.HTTPException) as e:
        return f"GET {path}: {type(e).__name__}"
    finally:
        conn.close()
    if resp.status >= 400:
        return f"GET {path} answered HTTP {resp.status}"
    if content and content not in body.decode("utf-8", "replace"):
        return f"GET {path} answered without {content!r}"
    return ""


def _command_check(container: Any, argv: list[str], timeout: float) -> str:
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used
    import requests  # noqa: PLC0415 -- start-up: requests loads when first used

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pushdock-check")
    try:
        future = pool.submit(container.exec_run, argv, stdout=True, stderr=True)
        result = future.result(timeout=timeout)
    except FutureTimeout:
        return f"command did not finish within {timeout:g}s"
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        return f"command could not run: {eng.one_line(e)}"
    finally:
        pool.shutdown(wait=False)
    if result.exit_code != 0:
        last = (result.output or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return f"command exited with status {result.exit_code}" + (f": {last[0][:200]}" if last[0] else "")
    return ""


def _uptime_check(container: Any, seconds: float, abort: threading.Event) -> str:
    state = container.attrs.get("State") or {}
    started = str(state.get("StartedAt") or "")
    try:
        since = datetime.fromisoformat(started[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        since = time.time()
    remaining = since + seconds - time.time()
    if remaining > 0 and abort.wait(remaining):
        return "aborted"
    container.reload()
    if eng.state_of(container) != "running" or int(container.attrs.get("RestartCount") or 0) > 0:
        return f"did not stay up for {seconds:g}s"
    return ""
