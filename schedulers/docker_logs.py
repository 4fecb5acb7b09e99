"""`logs` for docker-local: history merged across containers by timestamp, then (when following) a
live multiplex of every running container's stream.

Lines are `web.1: text`. Docker stamps every line (RFC 3339, nanoseconds, UTC); ordering across
containers uses those stamps, and following resumes each stream after the last stamp shown, so the
switch from history to live neither repeats nor drops lines.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from schedulers import docker_engine as eng

if TYPE_CHECKING:
    from pushdock.context import Context

RESCAN = 2.0  # seconds between looks for new (or restarted) containers while following
QUEUE_LINES = 1000  # lines buffered between the readers and a slow consumer


def lines(
    ctx: Context, app: str, *, follow: bool, tail: int | None, process: str | None
) -> Iterator[str]:
    """The app's log lines, oldest first; with `follow`, then live lines until the consumer closes."""
    with eng.engine_errors(doing=f"reading the logs of {app}"):
        read_at = time.time()
        containers = eng.app_containers(ctx, app, process=process)
        seen: dict[str, str] = {}
        history = [_history(c, tail, seen) for c in containers]
    yield from merge_tail(history, tail)
    if follow:
        yield from _follow(ctx, app, process, seen, read_at)


def merge_tail(histories: list[list[tuple[str, str]]], tail: int | None) -> Iterator[str]:
    """Merge per-container (key, line) lists, each oldest first, by key; keep the last `tail` lines."""
    merged = heapq.merge(*histories, key=lambda item: item[0])
    shown: Iterable[tuple[str, str]] = merged if tail is None else deque(merged, maxlen=max(0, tail))
    for _key, line in shown:
        yield line


def ts_key(stamp: str) -> str:
    """A sortable key for a docker timestamp: docker trims trailing zeros of the nanoseconds."""
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return f"{whole}.{frac[:9]:0<9}"


def key_epoch(key: str) -> float:
    whole, _, frac = key.partition(".")
    try:
        base = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0
    return base + int(frac or 0) / 1e9


def split_stamped(raw: bytes) -> tuple[str, str]:
    """`2024-05-01T10:00:00.5Z text` -> (sortable key, text)."""
    stamp, _, text = raw.decode("utf-8", "replace").rstrip("\r").partition(" ")
    return ts_key(stamp), text


def prefix(container: Any) -> str:
    return str(eng.slot_of(container) or container.name)


def _history(container: Any, tail: int | None, seen: dict[str, str]) -> list[tuple[str, str]]:
    raw = container.logs(timestamps=True, tail="all" if tail is None else max(0, tail))
    out = []
    label = prefix(container)
    for line in raw.split(b"\n"):
        if line:
            key, text = split_stamped(line)
            out.append((key, f"{label}: {text}"))
    if out:
        seen[container.id] = out[-1][0]
    return out


class _Follower:
    """One reader thread per running container, all feeding one bounded queue."""

    def __init__(self, seen: dict[str, str], read_at: float) -> None:
        self.seen = seen  # container id -> key of the last line shown
        self.read_at = read_at  # when the history was read: containers without lines start there
        self.queue: queue.Queue[str] = queue.Queue(maxsize=QUEUE_LINES)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.streams: dict[str, Any] = {}
        self.attached: set[str] = set()

    def attach(self, container: Any) -> None:
        with self.lock:
            if container.id in self.attached or self.stop.is_set():
                return
            self.attached.add(container.id)
        threading.Thread(
            target=self._pump, args=(container,), name=f"pushdock-logs-{container.name}", daemon=True
        ).start()

    def _pump(self, container: Any) -> None:
        import docker
        import requests

        since = self.seen.get(container.id)
        try:
            try:
                stream = container.logs(
                    stream=True,
                    follow=True,
                    timestamps=True,
                    tail="all",
                    since=key_epoch(since) - 0.001 if since else self.read_at,
                )
            except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
                logger.debug("log stream not opened", container=container.name, error=eng.one_line(e))
                return
            with self.lock:
                if self.stop.is_set():
                    _close(stream)
                    return
                self.streams[container.id] = stream
            label = prefix(container)
            buf = b""
            for chunk in stream:
                buf += chunk
                *complete, buf = buf.split(b"\n")
                for raw in complete:
                    self._emit(container.id, label, raw, since)
                if self.stop.is_set():
                    return
            if buf:
                self._emit(container.id, label, buf, since)
        finally:
            with self.lock:
                self.streams.pop(container.id, None)
                self.attached.discard(container.id)  # a restarted container is attached again

    def _emit(self, cid: str, label: str, raw: bytes, since: str | None) -> None:
        if not raw:
            return
        key, text = split_stamped(raw)
        if since is not None and key <= since:
            return  # shown by the history already
        self.seen[cid] = key
        line = f"{label}: {text}"
        while not self.stop.is_set():
            try:
                self.queue.put(line, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        with self.lock:
            self.stop.set()
            streams = list(self.streams.values())
        for s in streams:
            _close(s)


def _close(stream: Any) -> None:
    import docker

    try:
        stream.close()
    except (OSError, AttributeError, docker.errors.DockerException) as e:
        logger.debug("log stream close failed", error=str(e))


def _follow(
    ctx: Context, app: str, process: str | None, seen: dict[str, str], read_at: float
) -> Iterator[str]:
    follower = _Follower(seen, read_at)
    next_scan = 0.0
    try:
        while True:
            if time.monotonic() >= next_scan:
                with eng.engine_errors(doing=f"following the logs of {app}"):
                    for c in eng.app_containers(ctx, app, process=process, running=True):
                        follower.attach(c)
                next_scan = time.monotonic() + RESCAN
            try:
                line = follower.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            yield line
    finally:
        follower.close()
