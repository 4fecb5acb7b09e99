"""`logs` for the swarm scheduler: service logs (every task on every node), as `web.2: text` lines.

The engine stamps each line and, with details, names its task; the task's slot gives the prefix.
History is merged across services by timestamp (docker_logs.merge_tail); following opens one
follow stream per service, resumes after the last line shown, and picks up new services (a deploy)
on a rescan.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from loguru import logger

from schedulers import docker_engine as eng
from schedulers import swarm_engine as sw
from schedulers import swarm_nodes as sn
from schedulers.docker_logs import QUEUE_LINES, RESCAN, key_epoch, merge_tail, ts_key

if TYPE_CHECKING:
    from pushdock.context import Context


def raw_lines(stream: Iterable[bytes]) -> Iterator[str]:
    """Whole lines of a service log stream, whatever its chunking."""
    buf = b""
    for chunk in stream:
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for raw in complete:
            if raw:
                yield raw.decode("utf-8", "replace").rstrip("\r")
    if buf:
        yield buf.decode("utf-8", "replace").rstrip("\r")


def parse(line: str) -> tuple[str, str, str]:
    """`STAMP k=v,com.docker.swarm.task.id=ID,... text` -> (sortable key, task id, text)."""
    stamp, _, rest = line.partition(" ")
    details, _, text = rest.partition(" ")
    task = ""
    for pair in details.split(","):
        k, _, v = pair.partition("=")
        if k == "com.docker.swarm.task.id":
            task = v
    return ts_key(stamp), task, text


def open_follow(service_id: str, since: float) -> tuple[Any, Iterator[str]]:
    """A followed service log stream from `since` (epoch seconds): (closable stream, its lines).

    APIClient.service_logs, wrapped as the SDK wraps container logs (CancellableStream): its close()
    shuts the socket down, the only way to end a blocked read when the consumer goes away.
    """
    from docker.types.daemon import CancellableStream

    api = eng.client().api
    params = {"details": True, "follow": True, "stdout": True, "stderr": True, "timestamps": True,
              "tail": "all", "since": f"{since:.6f}"}
    response = api._get(api._url("/services/{0}/logs", service_id), params=params, stream=True)
    api._raise_for_status(response)
    stream = CancellableStream(api._get_result_tty(True, response, False), response)
    return stream, raw_lines(stream)


def _slots(services: list[Any]) -> dict[str, str]:
    """task id -> `web.2` for every task the manager remembers."""
    by_service = {s.id: sw.process_of(s) for s in services}
    return {str(t["ID"]): f"{by_service.get(str(t.get('ServiceID')), '?')}.{t.get('Slot')}"
            for t in sw.tasks_of(services)}


def lines(ctx: Context, app: str, *, follow: bool, tail: int | None, process: str | None) -> Iterator[str]:
    with eng.engine_errors(doing=f"reading the logs of {app}"):
        sn.require_manager()
        read_at = time.time()
        services = sw.app_services(ctx, app, process=process)
        slots = _slots(services)
        seen: dict[str, str] = {}
        history = [_history(s, tail, slots, seen) for s in services]
    yield from merge_tail(history, tail)
    if follow:
        yield from _follow(ctx, app, process, seen, read_at)


def _history(service: Any, tail: int | None, slots: dict[str, str], seen: dict[str, str]) -> list[tuple[str, str]]:
    import docker

    try:
        raw = eng.client().api.service_logs(service.id, details=True, stdout=True, stderr=True, timestamps=True,
                                            tail="all" if tail is None else max(0, tail), is_tty=False)
        out = []
        for line in raw_lines(raw):
            key, task, text = parse(line)
            out.append((key, f"{slots.get(task, sw.process_of(service))}: {text}"))
    except docker.errors.NotFound:
        return []  # removed meanwhile (a deploy retired it)
    out.sort(key=lambda item: item[0])  # tasks interleave: one service's stream is not globally ordered
    if out:
        seen[service.id] = out[-1][0]
    return out


class _Follower:
    """One reader thread per service, all feeding one bounded queue."""

    def __init__(self, ctx: Context, seen: dict[str, str], read_at: float) -> None:
        self.ctx = ctx
        self.seen = seen
        self.read_at = read_at
        self.queue: queue.Queue[str] = queue.Queue(maxsize=QUEUE_LINES)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.streams: dict[str, Any] = {}
        self.attached: set[str] = set()

    def attach(self, service: Any) -> None:
        with self.lock:
            if service.id in self.attached or self.stop.is_set():
                return
            self.attached.add(service.id)
        threading.Thread(target=self._pump, args=(service,), name=f"pushdock-logs-{service.name}",
                         daemon=True).start()

    def _pump(self, service: Any) -> None:
        import docker
        import requests

        since = self.seen.get(service.id)
        try:
            response, raw = open_follow(service.id, (key_epoch(since) - 0.001) if since else self.read_at)
            with self.lock:
                if self.stop.is_set():
                    close_stream(response)
                    return
                self.streams[service.id] = response
            slots: dict[str, str] = {}
            for line in raw:
                key, task, text = parse(line)
                if since is not None and key <= since:
                    continue
                if task not in slots:
                    slots = _slots([service])
                self._put(f"{slots.get(task, sw.process_of(service))}: {text}")
                if self.stop.is_set():
                    return
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            logger.debug("service log stream ended", service=service.name, error=eng.one_line(e))
        finally:
            with self.lock:
                self.streams.pop(service.id, None)

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
    import docker

    try:
        stream.close()
    except (OSError, AttributeError, docker.errors.DockerException) as e:  # half-closed already
        logger.debug("log stream close failed", error=str(e))


def _follow(ctx: Context, app: str, process: str | None, seen: dict[str, str], read_at: float) -> Iterator[str]:
    follower = _Follower(ctx, seen, read_at)
    next_scan = 0.0
    try:
        while True:
            if time.monotonic() >= next_scan:
                with eng.engine_errors(doing=f"following the logs of {app}"):
                    for s in sw.app_services(ctx, app, process=process):
                        follower.attach(s)
                next_scan = time.monotonic() + RESCAN
            try:
                line = follower.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            yield line
    finally:
        follower.close()
