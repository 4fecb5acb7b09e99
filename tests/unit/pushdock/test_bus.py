"""Trigger bus: Python plugins and executable script plugins, errors, registries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pushdock.bus import Bus
from pushdock.errors import HookFailed, NotFound, PushdockError
from pushdock.specs import hookimpl


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @hookimpl
    def post_create(self, ctx, app):  # type: ignore[no-untyped-def]
        self.calls.append(("post_create", app))

    @hookimpl
    def register_builders(self):  # type: ignore[no-untyped-def]
        return {"fake": object()}


def script(dir: Path, plugin: str, trigger: str, body: str) -> None:
    p = dir / plugin / trigger
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("#!/bin/sh\n" + body + "\n")
    os.chmod(p, 0o755)


def test_python_and_script_plugins_both_run(tmp_path: Path) -> None:
    rec = Recorder()
    script(tmp_path, "echoer", "post-create", 'echo "created $1"')
    bus = Bus(tmp_path, extra_plugins=(rec,), entry_points=False)
    out = bus.call("post_create", ctx=None, app="web")
    assert rec.calls == [("post_create", "web")]
    assert out == ["created web"]


def test_script_failure_is_hook_failed(tmp_path: Path) -> None:
    script(tmp_path, "bad", "post-create", 'echo "nope: $1" >&2; exit 3')
    bus = Bus(tmp_path, entry_points=False)
    with pytest.raises(HookFailed, match="nope: web"):
        bus.call("post_create", ctx=None, app="web")


def test_first_result_from_script(tmp_path: Path) -> None:
    script(tmp_path, "forcer", "builder-detect", 'echo dockerfile')
    bus = Bus(tmp_path, entry_points=False)
    assert bus.first("builder_detect", ctx=None, app="web", build_dir="/tmp") == "dockerfile"


def test_non_executable_scripts_are_ignored(tmp_path: Path) -> None:
    script(tmp_path, "off", "post-create", "exit 1")
    os.chmod(tmp_path / "off" / "post-create", 0o644)
    assert Bus(tmp_path, entry_points=False).call("post_create", ctx=None, app="web") == []


def test_registry_lookup(tmp_path: Path) -> None:
    bus = Bus(tmp_path, extra_plugins=(Recorder(),), entry_points=False)
    assert "fake" in bus.registry("builders")
    with pytest.raises(NotFound, match="unknown builder 'nope'"):
        bus.lookup("builders", "nope")


def test_misspelt_hook_fails_at_start(tmp_path: Path) -> None:
    class Typo:
        @hookimpl
        def post_craete(self, ctx, app):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(Exception, match="unknown hook"):
        Bus(tmp_path, extra_plugins=(Typo(),), entry_points=False)


def test_a_name_two_plugins_register_is_refused_naming_both(tmp_path: Path) -> None:
    class Other:
        @hookimpl
        def register_builders(self):  # type: ignore[no-untyped-def]
            return {"fake": object()}

    bus = Bus(tmp_path, extra_plugins=(Recorder(), Other()), entry_points=False)
    names = [bus.pm.get_name(p) for p in bus.pm.get_plugins()]
    with pytest.raises(PushdockError) as e:
        bus.registry("builders")
    assert e.value.message.startswith("builder 'fake' is registered twice: by plugin ")
    assert all(n in e.value.message for n in names)
