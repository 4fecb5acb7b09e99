"""The dashboard at `/` (placeholder until its pages land)."""

from __future__ import annotations

from typing import Any


def install(app: Any) -> None:
    pass
