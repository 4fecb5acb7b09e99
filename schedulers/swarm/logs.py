"""`logs` for the swarm scheduler: service logs (every task on every node), as `web.2: text` lines.

The engine stamps each line and, with details, names its task; the task's slot gives the prefix.
History is merged across services by timestamp (docker_local/logs.py: merge_tail); following opens one
follow stream per service, resumes after the last line shown, and picks up new services (a deploy)
on a rescan (log_follow).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from schedulers import engine as eng
from schedulers import log_follow
from schedulers.docker_local.logs import key_epoch, merge_tail, ts_key
from schedulers.log_follow import raw_lines
from schedulers.swarm import engine as sw
from schedulers.swarm import nodes as sn

if TYPE_CHECKING:
    from pushdock.context import Context


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
    from docker.types.daemon import CancellableStream  # noqa: PLC0415 -- start-up: docker loads when first used

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
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

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


def _open(service: Any, seen: dict[str, str], read_at: float) -> tuple[Any, Iterator[str]]:
    """A service's follow stream from after the last line shown (or from when the history was read)."""
    since = seen.get(service.id)
    stream, raw = open_follow(service.id, (key_epoch(since) - 0.001) if since else read_at)

    def shown() -> Iterator[str]:
        slots: dict[str, str] = {}
        for line in raw:
            key, task, text = parse(line)
            if since is not None and key <= since:
                continue  # shown by the history already
            if task not in slots:
                slots = _slots([service])  # a task started since the last look
            yield f"{slots.get(task, sw.process_of(service))}: {text}"

    return stream, shown()


def _follow(ctx: Context, app: str, process: str | None, seen: dict[str, str], read_at: float) -> Iterator[str]:
    # A service's stream spans its tasks and ends only when the service goes: never reattached.
    return log_follow.follow(
        lambda: sw.app_services(ctx, app, process=process),
        lambda s: _open(s, seen, read_at),
        doing=f"following the logs of {app}", reattach=False,
    )
