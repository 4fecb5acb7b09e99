"""Fixtures for the builders' unit tests: a fresh data dir, a Context whose bus holds only this plugin."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import builders.plugin
from pushdock.bus import Bus
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.settings import Settings
from pushdock.state import Identity


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    settings = Settings(data_dir=tmp_path / "data")
    bus = Bus(settings.data_dir / "plugins", extra_plugins=(builders.plugin,), entry_points=False)
    return Context(settings=settings, bus_override=bus)


@pytest.fixture
def run(ctx: Context):
    """Run a command through the real edge: returns (exit status, stdout, stderr)."""

    def _run(*argv: str, identity: Identity | None = None) -> tuple[int, str, str]:
        if identity is not None:
            ctx.identity = identity
        out, err = io.StringIO(), io.StringIO()
        rc = dispatch(list(argv), ctx, out, err)
        return rc, out.getvalue(), err.getvalue()

    return _run
