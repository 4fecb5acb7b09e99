"""Build records and cancelling, with a real Context and real signals (no engine: the 'build' is a sleep)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, replace

import pytest

from pushdock import builds
from pushdock.errors import BuildCancelled, PushdockError
from pushdock.progress import Progress


@pytest.fixture
def app(ctx):
    ctx.state.create_app("web")
    return "web"


def test_a_build_is_recorded_with_its_output(ctx, app) -> None:
    seen: list[str] = []
    progress = Progress(seen.append)
    with builds.track(ctx, app, "a" * 40, progress) as build:
        progress.line("step one")
        build.set_builder("dockerfile")
        assert builds.list_builds(ctx.state, app)[0].result == "running"
        build.releasing()
        build.save(release="v1")
    progress.line("after the build")  # no longer the build's
    with pytest.raises(PushdockError), builds.track(ctx, app, "b" * 40, progress):
        progress.line("compiling")
        raise PushdockError("docker build failed: boom")
    first, second = builds.list_builds(ctx.state, app)
    assert (first.id, first.result, first.builder, first.release) == (1, "succeeded", "dockerfile", "v1")
    assert (second.id, second.result, second.reason) == (2, "failed", "docker build failed: boom")
    assert list(builds.output(ctx.state, first)) == ["step one"]
    assert list(builds.output(ctx.state, second)) == ["compiling", " !     docker build failed: boom"]
    assert builds.last_failed(ctx.state, app).id == 2
    assert seen == ["step one", "after the build", "compiling"]


def test_cancel_stops_the_build_in_its_build_phase(ctx, app) -> None:
    outcome: list[object] = []

    def cancel_soon() -> None:
        time.sleep(0.5)
        try:
            outcome.append(builds.cancel(ctx, app, wait=10))
        except PushdockError as e:
            outcome.append(e)

    helper = threading.Thread(target=cancel_soon)
    helper.start()
    started = time.monotonic()
    with pytest.raises(BuildCancelled), builds.track(ctx, app, "c" * 40, Progress()):
        time.sleep(20)  # a long, silent build step: the signal interrupts it
    helper.join(10)
    assert time.monotonic() - started < 5
    (done,) = outcome
    assert isinstance(done, builds.Build) and done.result == "cancelled"
    assert list(builds.output(ctx.state, done)) == [" !     cancelled"]
    with pytest.raises(PushdockError, match="no build of web is running"):
        builds.cancel(ctx, app)


def test_cancel_is_refused_once_the_release_started(ctx, app) -> None:
    with builds.track(ctx, app, "d" * 40, Progress()) as build:
        build.releasing()
        with pytest.raises(PushdockError, match="too late to cancel"):
            builds.cancel(ctx, app, wait=1)
    assert builds.list_builds(ctx.state, app)[-1].result == "succeeded"


def test_a_build_whose_process_died_is_interrupted_and_never_signalled(ctx, app) -> None:
    with builds.track(ctx, app, "e" * 40, Progress()):
        pass
    (b,) = builds.list_builds(ctx.state, app)
    ghost = replace(b, result="running", phase="build", pid=os.getpid(), pid_start="not-this-process")
    ctx.state.set_json("builds", app, "1.json", asdict(ghost))
    assert builds.list_builds(ctx.state, app)[0].result == "interrupted"
    with pytest.raises(PushdockError, match="no build of web is running"):
        builds.cancel(ctx, app)


def test_builds_in_another_thread_cannot_be_cancelled_by_signal(ctx, app) -> None:
    errors: list[str] = []

    def build() -> None:
        with builds.track(ctx, app, "f" * 40, Progress()):
            try:
                builds.cancel(ctx, app, wait=1)
            except PushdockError as e:
                errors.append(str(e))

    t = threading.Thread(target=build)
    t.start()
    t.join(10)
    assert errors == ["build 1 of web runs inside `serve` (a push over HTTP): it cannot be cancelled"]


def test_builds_follow_a_renamed_app(ctx, app) -> None:
    progress = Progress()
    with builds.track(ctx, app, "9" * 40, progress):
        progress.line("built as web")
    ctx.state.rename_app(app, "site")
    (b,) = builds.list_builds(ctx.state, "site")
    assert b.app == "site" and list(builds.output(ctx.state, b)) == ["built as web"]
