"""What a scheduler is: something that runs a release's processes with zero-downtime swaps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.routing import Upstream
    from pushdock.state import Release

# Called by the scheduler once the new web instances are ready; returns when the proxy routes only
# to these upstreams and the old routes are drained.
Route = Callable[[list["Upstream"]], None]


@dataclass(frozen=True)
class Instance:
    app: str
    process: str
    index: int
    release: int
    id: str
    name: str
    state: str  # running | exited | restarting | created | ...
    upstream: Upstream | None = None
    restarts: int = 0


class Scheduler(Protocol):
    """A scheduler whose instances change address by themselves (swarm) also sets `upstreams_move = True` and
    has `ready_upstreams(ctx, release, routed) -> list[Upstream]`, which `serve` calls to re-route
    (hooks.pipeline.follow_upstreams), and `watch_moves(wake, done)`, which blocks calling wake() whenever its
    engine reports a change that may move an instance (serve then follows at once, not at its next look)."""

    name: str

    def deploy(self, ctx: Context, release: Release, route: Route, progress: Progress) -> None:
        """Start the release beside what runs, check it, route(), then retire the old instances.

        On any failure the new instances are removed, the old ones keep serving, and DeployFailed
        is raised. Checks are the default readiness plus the release's app.json healthchecks
        (`release.checks`, see pushdock/checks.py); the app's check settings (`pushdock.checks.check_settings`:
        disabled, skipped, wait-to-retire, stop-timeout) say how to swap.
        """
        ...

    def restart_process(self, ctx: Context, release: Release, route: Route, progress: Progress, *,
                        process: str) -> None:
        """Replace the instances of one process type of `release` (the current one) with fresh ones, swapped
        as deploy does: new beside old, checked, route() if it is web, then the old ones retire (`ps:restart APP
        PROCESS`). On a failure the new instances are removed and DeployFailed is raised."""
        ...

    def instances(self, ctx: Context, app: str) -> list[Instance]:
        """Every instance of the app known to the engine (any release, any state)."""
        ...

    def stop(self, ctx: Context, app: str) -> None:
        """Stop (and remove) every instance of the app."""
        ...

    def logs(
        self, ctx: Context, app: str, *, follow: bool, tail: int | None, process: str | None
    ) -> Iterator[str]:
        """Log lines of the app's instances (exited ones too, when not following), prefixed `process.N: `."""
        ...

    def run(self, ctx: Context, release: Release, argv: list[str], *, tty: bool) -> int:
        """A one-off container of the release's image and env, attached to this process's stdio; its exit status."""
        ...

    def run_task(self, ctx: Context, release: Release, command: str, progress: Progress, *, timeout: float,
                 label: str, commit_to: str | None = None) -> None:
        """Run `command` once in a new container of the release (release phase, predeploy, postdeploy),
        streaming its output to progress; DeployFailed on a non-zero exit or after `timeout` seconds.
        `commit_to`: on success, the container's files become that local image (predeploy, as Dokku does)."""
        ...

    def reconcile(self, ctx: Context, release: Release, route: Route, progress: Progress) -> list[str]:
        """Make what runs match `release`: start what is missing, report strays. Returns messages."""
        ...
