"""`logs` for docker-local: history merged across containers by timestamp, then (when following) a
live multiplex of every running container's stream.

Lines are `web.1: text`. Docker stamps every line (RFC 3339, nanoseconds, UTC); ordering across
containers uses those stamps, and following resumes each stream after the last stamp shown, so the
switch from history to live neither repeats nor drops lines (the live multiplex: log_follow).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from schedulers import engine as eng
from schedulers import log_follow
from schedulers.log_follow import raw_lines

if TYPE_CHECKING:
    from pushdock.context import Context


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


def split_stamped(raw: bytes | str) -> tuple[str, str]:
    """`2024-05-01T10:00:00.5Z text` -> (sortable key, text)."""
    line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    stamp, _, text = line.rstrip("\r").partition(" ")
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


def _open(container: Any, seen: dict[str, str], read_at: float) -> tuple[Any, Iterator[str]]:
    """A container's follow stream from after the last line shown (or from when the history was read)."""
    since = seen.get(container.id)
    stream = container.logs(stream=True, follow=True, timestamps=True, tail="all",
                            since=key_epoch(since) - 0.001 if since else read_at)
    label = prefix(container)

    def shown() -> Iterator[str]:
        for raw in raw_lines(stream):
            key, text = split_stamped(raw)
            if since is not None and key <= since:
                continue  # shown by the history already
            seen[container.id] = key
            yield f"{label}: {text}"

    return stream, shown()


def _follow(
    ctx: Context, app: str, process: str | None, seen: dict[str, str], read_at: float
) -> Iterator[str]:
    return log_follow.follow(
        lambda: eng.app_containers(ctx, app, process=process, running=True),
        lambda c: _open(c, seen, read_at),
        doing=f"following the logs of {app}", reattach=True,  # a restarted container is attached again
    )
