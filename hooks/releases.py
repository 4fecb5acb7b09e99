"""Release lifecycle around the swap: the release phase and scripts, rollback targets, image pruning.

Release phase (each in a one-off container of the new image, with the new env, through the scheduler's
`run_task`): app.json `scripts.dokku.predeploy` (its files kept: committed as the release's image), then
the Procfile `release:` command — both before any new process starts, a failure or timeout aborts the
release with the old one untouched — and app.json `postdeploy` after the swap (the new release already
serves: a failure fails the push or command, and is not undone). They
run when what a process sees changes (a build, a config or storage change, a rollback), not for a scale change or
a restart, as Heroku's release phase does.

Pruning: after each successful deploy (a push's once the pusher has its answer), the releases outside the last
N successful ones (N: property `releases/APP/keep`, else `releases/--global/keep`, default 5) are marked `pruned`
and their images removed unless a kept release uses the same image. The kept releases are exactly what rollback
can reach.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from pushdock import docker_client
from pushdock.errors import Conflict, DeployFailed, NotFound, PushdockError
from pushdock.releases import keep_count
from pushdock.state import Release

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.progress import Progress
    from pushdock.state import State

SUCCESSFUL = ("current", "superseded")


def needs_release_phase(release: Release, previous: Release | None) -> bool:
    """A new image, environment or set of mounts runs the release phase; a formation change or restart does not."""
    return (previous is None or previous.image != release.image or previous.env != release.env
            or previous.mounts != release.mounts)


class PostdeployFailed(DeployFailed):
    """postdeploy failed after the swap: `release` is live (current) and stays so."""

    def __init__(self, release: Release, failure: str) -> None:
        super().__init__(f"postdeploy failed ({failure}): the new release {release.name} keeps serving")
        self.release = release


def image_name(app: str, number: int) -> str:
    """The local image of release vN (a build's, or the one predeploy's files were committed to)."""
    return f"pushdock/{app}:v{number}"


def run_before(ctx: Context, release: Release, progress: Progress) -> Release:
    """predeploy, then the release command; DeployFailed (from the scheduler) stops the deploy.

    predeploy's file changes are kept, as Dokku keeps them: its container is committed as the release's
    own image (`pushdock/APP:vN`, on top of the image it ran in), and the release returned (and saved)
    runs that image. The release command's changes are not kept (Heroku's rule).
    """
    if predeploy := release.scripts.get("predeploy"):
        target = image_name(release.app, release.number)
        _run(ctx, release, progress, "predeploy", predeploy, commit_to=target)
        release = release.with_(image=target)
        ctx.state.save_release(release)
    if command := release.processes.get("release"):
        _run(ctx, release, progress, "release", command)
    return release


def run_after(ctx: Context, release: Release, progress: Progress) -> str | None:
    """postdeploy, after the swap; returns the failure (its output already shown to the pusher) or None."""
    command = release.scripts.get("postdeploy")
    if not command:
        return None
    try:
        _run(ctx, release, progress, "postdeploy", command)
    except PushdockError as e:
        logger.warning("postdeploy failed", app=release.app, release=release.number, error=str(e))
        return str(e)
    return None


def _run(ctx: Context, release: Release, progress: Progress, label: str, command: str, *,
         commit_to: str | None = None) -> None:
    scheduler = ctx.scheduler(release.app)
    with logger.contextualize(task=label):
        scheduler.run_task(ctx, release, command, progress, timeout=ctx.settings.release_timeout, label=label,
                           **({"commit_to": commit_to} if commit_to else {}))


# -- rollback -------------------------------------------------------------------------------------------
def rollback_target(state: State, app: str, number: int | None) -> Release:
    """The release `rollback` would deploy: vN, or the newest successful one before the current."""
    current = state.current_release(app)
    if current is None:
        raise NotFound(f"{app} has not been deployed yet: nothing to roll back to")
    if number is None:
        earlier = [r for r in state.list_releases(app) if r.number < current.number and r.status in SUCCESSFUL]
        if not earlier:
            raise NotFound(f"{app} has no earlier successful release than {current.name}")
        target = earlier[-1]
    else:
        target = state.get_release(app, number)
    if target.number == current.number:
        raise Conflict(f"{target.name} is the current release of {app}")
    if target.status == "failed":
        raise Conflict(f"{target.name} failed to deploy: roll back to a release that ran (see `releases {app}`)")
    if target.status not in SUCCESSFUL:
        raise Conflict(f"{target.name} never finished deploying ({target.status})")
    if target.pruned:
        raise Conflict(f"{target.name} was pruned: its image is gone (releases keep the last "
                       f"{keep_count(state, app)} images; `releases:set {app} keep N`)")
    return target


# -- pruning --------------------------------------------------------------------------------------------
def plan_prune(releases: list[Release], keep: int) -> tuple[list[Release], list[str]]:
    """(releases to mark pruned, images to remove): everything outside the newest `keep` successful ones.

    The current release is always kept. An image is removed (and its releases marked) only if no kept
    release uses it: a config change or a rollback makes a release with an earlier release's image,
    which then stays reachable.
    """
    ordered = sorted(releases, key=lambda r: r.number, reverse=True)
    successful = [r for r in ordered if r.status in SUCCESSFUL and not r.pruned]
    kept = {r.number for r in successful[:keep]} | {r.number for r in ordered if r.status == "current"}
    kept_images = {r.image for r in ordered if r.number in kept}
    to_mark = [r for r in ordered if r.number not in kept and r.status != "pending" and not r.pruned
               and r.image not in kept_images]
    return to_mark, sorted({r.image for r in to_mark if r.image})


def prune_later(ctx: Context, app: str, progress: Progress) -> None:
    """`prune` as a job of the deploy's Progress (progress.later): for a push, once the pusher has its answer and
    the old containers retired (removing an image is an engine call of 15-60 ms); nothing is queued when nothing
    is to be pruned."""
    to_mark, _ = plan_prune(ctx.state.list_releases(app), keep_count(ctx.state, app))
    if to_mark:
        progress.later(lambda p: prune(ctx, app, p))


def prune(ctx: Context, app: str, progress: Progress) -> None:
    """Mark releases outside the last N as pruned and remove their images. Best effort: never fails a deploy."""
    to_mark, images = plan_prune(ctx.state.list_releases(app), keep_count(ctx.state, app))
    for r in to_mark:
        ctx.state.save_release(r.with_(pruned=True))
    removed = remove_images(images)
    if removed:
        progress.detail(f"Pruned {len(removed)} old image{'s' if len(removed) != 1 else ''} "
                        f"(keeping the last {keep_count(ctx.state, app)} releases)")
    logger.info("releases pruned", app=app, marked=len(to_mark), images=len(removed))


def remove_images(images: list[str]) -> list[str]:
    """Remove image tags from the local engine (never forced: an image in use stays); returns those removed."""
    if not images:
        return []
    import docker  # noqa: PLC0415 -- start-up: docker loads when first used

    try:
        client = docker_client.client()
    except docker.errors.DockerException as e:
        logger.warning("images not pruned: no engine", error=str(e))
        return []
    removed = []
    for image in images:
        try:
            client.images.remove(image)
            removed.append(image)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as e:
            logger.warning("image not pruned", image=image, error=" ".join(str(e).split())[:200])
    return removed
