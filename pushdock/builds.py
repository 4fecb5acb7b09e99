"""Build records: every deploy of a commit (push, webhook, `ps:rebuild`, `apps:clone`) is build N of its app.

A record (DATA_DIR/data/builds/APP/N.json) says which commit, which builder, when, how long and how it
ended; the build's output is kept on its own (`State.build_log`) besides the app's deploy.log. The record is
written at the start (result `running`, with the pid of the process that builds) and at the end.

Cancelling (`builds:cancel`): the building process gets SIGUSR1. While the builder runs, the handler raises
BuildCancelled there, so the builder's own clean-up runs (its build container is removed; a Dockerfile build
whose client went away is stopped by the engine) and the push is rejected with `cancelled`. Once the build
is over, a cancel is still honoured until the release starts; after that it is refused (a release is never
stopped half-way). A build that runs outside a main thread (a push over HTTP inside `serve`) cannot be
cancelled this way: its record says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import IO, TYPE_CHECKING, Any

from pushdock.errors import BuildCancelled, NotFound, PushdockError, UsageError

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import State

PLUGIN = "builds"
CANCEL_SIGNAL = signal.SIGUSR1
RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "running", "succeeded", "failed", "cancelled", "interrupted"


@dataclass(frozen=True)
class Build:
    app: str
    id: int
    sha: str
    started: float
    builder: str = ""
    took: float | None = None
    result: str = RUNNING
    phase: str = "build"  # build | release (from the release stage on, a cancel is refused)
    release: str = ""
    reason: str = ""
    who: str = ""
    pid: int | None = None  # the building process
    pid_start: str = ""  # that process's start time, so a reused pid is never signalled
    cancellable: bool = True  # False: it builds outside a main thread (inside `serve`), see above

    def view(self) -> dict[str, Any]:
        """The public fields (builds:list --format json)."""
        return {"id": self.id, "commit": self.sha, "builder": self.builder, "started": _iso(self.started),
                "took": self.took, "result": self.result, "release": self.release, "reason": self.reason,
                "who": self.who}


def list_builds(state: State, app: str) -> list[Build]:
    """Every build of the app, oldest first; a `running` one whose process is gone is `interrupted`."""
    out = []
    for name in state.props(PLUGIN, app):
        if name.endswith(".json") and name[:-5].isdigit():
            with contextlib.suppress(ValueError, TypeError, OSError):
                # (the app's name as asked: a record written before `apps:rename` still says the old one)
                out.append(_alive_or_interrupted(Build(**{**state.get_json(PLUGIN, app, name), "app": app})))
    return sorted(out, key=lambda b: b.id)


def get_build(state: State, app: str, build_id: str) -> Build:
    if not build_id.isdigit():
        raise UsageError(f"invalid build id {build_id[:20]!r}: a number from `builds:list {app}`")
    for b in list_builds(state, app):
        if b.id == int(build_id):
            return b
    raise NotFound(f"app {app} has no build {int(build_id)}")


def output(state: State, build: Build) -> Iterator[str]:
    """The build's output lines (what the pusher saw)."""
    try:
        with open(state.build_log(build.app, build.id), errors="replace") as f:
            for line in f:
                yield line.rstrip("\n")
    except FileNotFoundError:
        return


def last_failed(state: State, app: str) -> Build:
    failed = [b for b in list_builds(state, app) if b.result == FAILED]
    if not failed:
        raise NotFound(f"{app} has no failed deploy")
    return failed[-1]


def cancel(ctx: Context, app: str, *, wait: float = 60.0) -> Build:
    """Stop the app's running build (see the module's docstring); the build as it ended."""
    running = [b for b in list_builds(ctx.state, app) if b.result == RUNNING]
    if not running:
        raise PushdockError(f"no build of {app} is running")
    build = running[-1]
    if build.phase != "build":
        raise PushdockError(f"build {build.id} of {app} is built and its release is being deployed: "
                            "too late to cancel")
    if build.pid is None or not build.cancellable:
        raise PushdockError(f"build {build.id} of {app} runs inside `serve` (a push over HTTP): "
                            "it cannot be cancelled")
    with contextlib.suppress(ProcessLookupError):
        os.kill(build.pid, CANCEL_SIGNAL)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        now = next((b for b in list_builds(ctx.state, app) if b.id == build.id), build)
        if now.result != RUNNING:
            if now.result != CANCELLED:
                raise PushdockError(f"build {build.id} of {app} ended before it was cancelled: {now.result}")
            return now
        if now.phase != "build":
            raise PushdockError(f"build {build.id} of {app} finished building before the cancel arrived: "
                                "its release is being deployed")
        time.sleep(0.2)
    raise PushdockError(f"build {build.id} of {app} did not stop within {wait:.0f}s")


class Tracker:
    """The build under way: `builder` and `releasing()` are called by the pipeline."""

    def __init__(self, ctx: Context, build: Build, log: IO[str]) -> None:
        self.ctx, self.build, self.log = ctx, build, log
        self.cancel_requested = False

    def save(self, **changes: Any) -> None:
        self.build = replace(self.build, **changes)
        self.ctx.state.set_json(PLUGIN, self.build.app, f"{self.build.id}.json", asdict(self.build))

    def set_builder(self, name: str) -> None:
        self.save(builder=name)

    def releasing(self) -> None:
        """The build is over: honour a cancel that came meanwhile, then refuse any later one."""
        if self.cancel_requested:
            raise BuildCancelled("cancelled")
        self.save(phase="release")

    def on_signal(self, signum: int, frame: object) -> None:
        first, self.cancel_requested = not self.cancel_requested, True
        if first and self.build.phase == "build":  # once: a second cancel must not interrupt the clean-up
            raise BuildCancelled("cancelled")

    def write(self, line: str) -> None:
        self.log.write(line + "\n")


@contextlib.contextmanager
def track(ctx: Context, app: str, sha: str, progress: Progress) -> Iterator[Tracker]:
    """Record a build of `sha` around the block (the caller holds the app lock, so ids never collide)."""
    state = ctx.state
    builds = list_builds(state, app)
    number = (builds[-1].id + 1) if builds else 1
    cancellable = threading.current_thread() is threading.main_thread()
    path = state.build_log(app, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(path, "w", buffering=1, errors="replace") as log:
        tracker = Tracker(ctx, Build(app=app, id=number, sha=sha, started=started, who=ctx.identity.name,
                                     pid=os.getpid(), pid_start=_process_start(os.getpid()),
                                     cancellable=cancellable), log)
        saved = signal.signal(CANCEL_SIGNAL, tracker.on_signal) if cancellable else None
        progress.sinks.append(tracker.write)
        try:
            tracker.save()
            try:
                yield tracker
            except BuildCancelled as e:
                tracker.write(f" !     {e}")
                tracker.save(result=CANCELLED, phase="done", reason=str(e), took=round(time.time() - started, 1))
                raise
            except BaseException as e:
                tracker.write(f" !     {e}" if isinstance(e, PushdockError) else " !     the build was interrupted")
                tracker.save(result=FAILED, phase="done", reason=str(e)[:300], took=round(time.time() - started, 1))
                raise
            tracker.save(result=SUCCEEDED, phase="done", took=round(time.time() - started, 1))
        finally:
            if saved is not None:
                signal.signal(CANCEL_SIGNAL, saved)
            with contextlib.suppress(ValueError):
                progress.sinks.remove(tracker.write)


def _alive_or_interrupted(b: Build) -> Build:
    if b.result != RUNNING or b.pid is None or _process_start(b.pid) == b.pid_start:
        return b
    return replace(b, result=INTERRUPTED)


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' if there is no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
