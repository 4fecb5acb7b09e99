"""Following logs live: one reader thread per source (a container, or a swarm service), all feeding one
bounded queue, with a rescan that attaches sources that appeared (a deploy, a restarted container).

The schedulers say how to list their sources and how to open one source's stream (docker_logs,
swarm_logs); this module owns the threads, the queue and closing every stream when the consumer goes
away. Closing is what ends a read blocked on a quiet stream.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from loguru import logger

from schedulers import engine as eng

RESCAN = 2.0  # seconds between looks for new (or restarted) sources while following
QUEUE_LINES = 1000  # lines buffered between the readers and a slow consumer

# A source (anything with .id and .name) -> (its closable stream, the lines to show, already prefixed).
Open = Callable[[Any], tuple[Any, Iterator[str]]]


def raw_lines(stream: Iterable[bytes]) -> Iterator[str]:
    """Whole non-empty lines of a log stream, whatever its chunking, decoded, without a trailing CR."""
    buf = b""
    for chunk in stream:
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for raw in complete:
            if raw:
                yield raw.decode("utf-8", "replace").rstrip("\r")
    if buf:
        yield buf.decode("utf-8", "replace").rstrip("\r")


def follow(sources: Callable[[], Iterable[Any]], open_stream: Open, *, doing: str, reattach: bool) -> Iterator[str]:
    """Live lines of every source `sources()` lists (looked at again every RESCAN s) until the consumer closes.

    `reattach`: a source whose stream ended is opened again when a rescan still lists it (a restarted
    container); otherwise a source is read once (a service's stream ends only when it is removed).
    """
    mux = _Multiplexer(open_stream, reattach=reattach)
    next_scan = 0.0
    try:
        while True:
            if time.monotonic() >= next_scan:
                with eng.engine_errors(doing=doing):
                    for source in sources():
                        mux.attach(source)
                next_scan = time.monotonic() + RESCAN
            try:
                line = mux.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            yield line
    finally:
        mux.close()


class _Multiplexer:
    def __init__(self, open_stream: Open, *, reattach: bool) -> None:
        self.open_stream = open_stream
        self.reattach = reattach
        self.queue: queue.Queue[str] = queue.Queue(maxsize=QUEUE_LINES)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.streams: dict[str, Any] = {}
        self.attached: set[str] = set()

    def attach(self, source: Any) -> None:
        with self.lock:
            if source.id in self.attached or self.stop.is_set():
                return
            self.attached.add(source.id)
        threading.Thread(target=self._pump, args=(source,), name=f"pushdock-logs-{source.name}", daemon=True).start()

    def _pump(self, source: Any) -> None:
        import docker  # noqa: PLC0415 -- start-up: docker loads when first used
        import requests  # noqa: PLC0415 -- start-up: requests loads when first used

        try:
            stream, lines = self.open_stream(source)
            with self.lock:
                if self.stop.is_set():
                    close_stream(stream)
                    return
                self.streams[source.id] = stream
            for line in lines:
                self._put(line)
                if self.stop.is_set():
                    return
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            logger.debug("log stream ended", source=source.name, error=eng.one_line(e))
        finally:
            with self.lock:
                self.streams.pop(source.id, None)
                if self.reattach:
                    self.attached.discard(source.id)

    def _put(self, line: str) -> None:
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
            close_stream(s)


def close_stream(stream: Any) -> None:
    """Close a log stream (its socket), ending a blocked read; a stream closed already is fine."""
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        stream.close()
    except (OSError, AttributeError, docker.errors.DockerException) as e:  # half-closed already
        logger.debug("log stream close failed", error=str(e))
