"""The pack builder without Docker: its argv, the builder image per app and global, and a missing `pack`.

The build itself (streaming, the image, relabelling) runs against tests/fakes/pack in tests/e2e/test_builders.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import properties as p
from builders.pack import PackBuilder, pack_argv
from pushdock.builder import BuildRequest
from pushdock.context import Context
from pushdock.errors import BuildFailed, UsageError
from pushdock.progress import Progress
from pushdock.state import GLOBAL

APP = "myapp"


def test_argv() -> None:
    assert pack_argv("pushdock/a:v3", Path("/tmp/b"), "heroku/builder:24", ["A", "B"]) == [
        "build", "pushdock/a:v3", "--path", "/tmp/b", "--builder", "heroku/builder:24", "--default-process", "web",
        "--pull-policy", "if-not-present", "--env", "A", "--env", "B"]


def test_builder_image_per_app_then_global_then_default(ctx: Context) -> None:
    ctx.state.create_app(APP)
    assert p.get_pack_builder(ctx.state, APP) == ("heroku/builder:24", "default")
    assert p.set_pack_property(ctx.state, GLOBAL, "builder", "paketobuildpacks/builder-jammy-base") == (
        "paketobuildpacks/builder-jammy-base")
    assert p.get_pack_builder(ctx.state, APP) == ("paketobuildpacks/builder-jammy-base", "global")
    p.set_pack_property(ctx.state, APP, "builder", "registry.example.com/b:1@sha256:abc")
    assert p.get_pack_builder(ctx.state, APP) == ("registry.example.com/b:1@sha256:abc", "app")
    assert p.set_pack_property(ctx.state, APP, "builder", "") is None
    assert p.get_pack_builder(ctx.state, APP)[1] == "global"
    with pytest.raises(UsageError, match="invalid builder image 'Bad Image'"):
        p.set_pack_property(ctx.state, APP, "builder", "Bad Image")
    with pytest.raises(UsageError, match="unknown builder-pack property 'stack'"):
        p.set_pack_property(ctx.state, APP, "stack", "x")


def test_detect(tmp_path: Path) -> None:
    assert PackBuilder().detect(tmp_path, {}, "Dockerfile") is None
    (tmp_path / "project.toml").write_text("")
    assert PackBuilder().detect(tmp_path, {}, "Dockerfile") == "project.toml found"


def test_missing_pack_is_one_line_saying_how_to_install(ctx: Context, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "src").mkdir()
    with pytest.raises(BuildFailed) as e:
        PackBuilder().build(ctx, BuildRequest(APP, tmp_path / "src", "pushdock/myapp:v1"), Progress())
    assert e.value.message == ("pack is not installed: install the pack CLI on this host's PATH: "
                               "https://buildpacks.io/docs/for-platform-operators/how-to/integrate-ci/pack/")
    assert "herokuish" in (e.value.hint or "")


def test_a_cancelled_pack_build_stops_pack(ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`builds:cancel` during a pack build: the build stops at once and pack is killed, not left building.
    `pack` here is a script that writes its pid and sleeps (the real CLI cannot be installed here)."""
    import os
    import threading
    import time

    from pushdock import builds
    from pushdock.errors import BuildCancelled

    bin_dir, src = tmp_path / "bin", tmp_path / "src"
    bin_dir.mkdir()
    src.mkdir()
    (src / "project.toml").write_text("")
    (bin_dir / "pack").write_text(f"#!/bin/sh\necho $$ > {tmp_path}/pid\nexec sleep 30\n")
    (bin_dir / "pack").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    ctx.state.create_app(APP)
    lines: list[str] = []

    def cancel_once_pack_runs() -> None:
        while not (tmp_path / "pid").exists():
            time.sleep(0.05)
        builds.cancel(ctx, APP, wait=10)

    helper = threading.Thread(target=cancel_once_pack_runs)
    helper.start()
    started = time.monotonic()
    progress = Progress(lines.append)
    with pytest.raises(BuildCancelled), builds.track(ctx, APP, "0" * 40, progress):
        PackBuilder().build(ctx, BuildRequest(APP, src, "pushdock/myapp:v1"), progress)
    helper.join(10)
    assert time.monotonic() - started < 10
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split(")")[1][:3]:
        assert time.monotonic() < deadline, "pack still runs"
        time.sleep(0.1)
