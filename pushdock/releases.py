"""Releases as users name them (`v7`) and how many are kept (`releases:set APP keep N`).

Pruning itself (hooks/releases.py) runs in the pipeline after a deploy; the commands only read and set these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushdock.errors import UsageError
from pushdock.state import GLOBAL

if TYPE_CHECKING:
    from pushdock.state import State

DEFAULT_KEEP = 5
MAX_KEEP = 100


def parse_version(text: str) -> int:
    """`v7` or `7` -> 7; UsageError otherwise."""
    raw = text[1:] if text[:1] in ("v", "V") else text
    if not raw.isdigit() or not 0 < int(raw) < 10**9:
        raise UsageError(f"expected a release such as v3, got {text[:30]!r}")
    return int(raw)


def keep_count(state: State, app: str) -> int:
    for scope in (app, GLOBAL):
        raw = state.get("releases", scope, "keep")
        if raw and raw.strip().isdigit() and int(raw) >= 1:
            return min(int(raw), MAX_KEEP)
    return DEFAULT_KEEP


def parse_keep(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_KEEP:
        raise UsageError(f"keep must be a whole number from 1 to {MAX_KEEP} (got {value[:20]!r})")
    return int(value)
