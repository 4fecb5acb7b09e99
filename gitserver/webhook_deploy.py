"""Deploys queued by GitHub webhooks: one at a time per app, bursts coalesced to the newest delivery.

`DeployQueue` lives in `pushdock serve`: per app a thread takes the newest pending job and runs it in a
worker process (`python -m gitserver.webhook_deploy`, its own session: a deploy under way finishes even
if `serve` stops; jobs still queued then are lost and stay `queued` in the log). The worker fetches the
commit from the configured repository with dulwich, then, under the app lock, takes the same path as a
`git push`: checks (a commit, connected, deploys not locked), `pipeline.deploy_push`, and a
compare-and-swap of the branch ref. Each step's outcome goes to the delivery log (`webhooks:report`);
the final one (deployed, already deployed, ignored, failed, superseded) is also a `webhook:deploy` audit event.
A commit that is an ancestor of the deployed one (or of the branch's tip) is ignored, never deployed:
a webhook does not roll back (`rollback_reason`, checked when the delivery arrives and again under the lock).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from loguru import logger

from gitserver.webhook_store import deliveries, get_setting, update_delivery
from hooks import pipeline
from pushdock import log, proc
from pushdock.context import Context
from pushdock.errors import PushdockError, internal_error
from pushdock.progress import Progress
from pushdock.settings import Settings
from pushdock.state import Identity

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dulwich.objects import ObjectID
    from dulwich.refs import Ref

    from pushdock.context import Context

JOB_VARIABLE = "PUSHDOCK_WEBHOOK_JOB"
IDENTITY = "github-webhook"
DOOR = "http"
FINAL = ("deployed", "failed", "already", "superseded", "ignored")
NO_ROLLBACK = "a webhook never rolls back: push it, or use releases:rollback"


@dataclass(frozen=True)
class Job:
    """One accepted push delivery to deploy."""

    app: str
    delivery: str
    ref: str  # refs/heads/BRANCH
    after: str  # the commit to deploy
    repo: str  # the configured clone URL
    pusher: str = ""

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/")


def as_webhook(ctx: Context, app: str) -> Context:
    """`ctx` acting as GitHub's webhook of `app`: the who and door of its audit events."""
    return dataclasses.replace(ctx, identity=Identity(name=IDENTITY, role="deployer", apps=(app,), door=DOOR))


def record(ctx: Context, job: Job, outcome: str, started: float | None = None) -> None:
    """The `webhook:deploy` event of a job's final outcome; a full disk is only logged."""
    result = "ok" if outcome.startswith(("deployed", "already")) else outcome.split(" ", 1)[0].rstrip(":")
    try:
        as_webhook(ctx, job.app).event("webhook:deploy", app=job.app, result=result, started=started,
                                       delivery=job.delivery, ref=job.ref, sha=job.after, outcome=outcome)
    except OSError as e:
        logger.error("webhook deploy event not recorded", app=job.app, delivery=job.delivery, error=repr(e))


def deploy_branch(ctx: Context, app: str) -> str:
    """The app's deploy branch: the setting, else the branch HEAD names (main for a new app)."""
    configured = (ctx.state.get("git", app, "deploy-branch") or "").strip()
    if configured:
        return configured
    from dulwich.refs import HEADREF  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    repo = Repo(str(ctx.state.repo_path(app)))
    try:
        head = repo.refs.get_symrefs().get(HEADREF, b"refs/heads/main")
    finally:
        repo.close()
    return head.decode().removeprefix("refs/heads/")


def rollback_reason(ctx: Context, app: str, ref: str, after: str) -> str | None:
    """Why a webhook must not deploy `after` (an `ignored: ...` outcome), or None.

    `after` must not be a strict ancestor of the deployed commit or of the branch's tip: deploying it would
    take the app and its branch back (a captured delivery re-sent, GitHub retrying an old one)."""
    from dulwich.graph import can_fast_forward  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.objects import Commit, ObjectID  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.refs import Ref  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    release = ctx.state.current_release(app)
    repo = Repo(str(ctx.state.repo_path(app)))
    try:
        store, new = repo.object_store, ObjectID(after.encode())
        if new not in store or not isinstance(store[new], Commit):
            return None  # a commit this repository does not hold is no ancestor of anything in it
        tip = repo.refs.as_dict().get(Ref(ref.encode()))
        branch = ref.removeprefix("refs/heads/")
        for what, old in (("the deployed commit", ObjectID((release.sha if release else "").encode())),
                          (f"the tip of {branch}", tip or ObjectID(b""))):
            if old and old != new and old in store and can_fast_forward(repo, new, old):
                return f"ignored: {after[:7]} is an ancestor of {what} ({old.decode()[:7]}); {NO_ROLLBACK}"
        return None
    finally:
        repo.close()


# -- the queue (in serve) --------------------------------------------------------------------------------
class DeployQueue:
    """Per app: at most one job running and one pending; a newer job replaces the pending one."""

    def __init__(self, ctx: Context, run: Callable[[Context, Job], None] | None = None) -> None:
        self.ctx = ctx
        self.run = run or run_in_worker
        self._lock = threading.Lock()
        self._pending: dict[str, Job] = {}
        self._threads: dict[str, threading.Thread] = {}

    def submit(self, job: Job) -> None:

        with self._lock:
            replaced = self._pending.get(job.app)
            self._pending[job.app] = job
            start = job.app not in self._threads
            if start:
                thread = threading.Thread(target=self._drain, args=(job.app,), name=f"webhook-{job.app}",
                                          daemon=True)
                self._threads[job.app] = thread
        if replaced is not None:
            outcome = f"superseded by {job.delivery}"
            update_delivery(self.ctx, job.app, replaced.delivery, outcome=outcome)
            record(self.ctx, replaced, outcome)
        if start:
            thread.start()

    def _drain(self, app: str) -> None:
        while True:
            with self._lock:
                job = self._pending.pop(app, None)
                if job is None:
                    del self._threads[app]
                    return
            try:
                self.run(self.ctx, job)
            except Exception:  # the thread must go on to the next job
                line = internal_error("webhook deploy crashed", app=app, delivery=job.delivery)
                _finish(self.ctx, job, f"failed: {line}")

    def idle(self, timeout: float) -> bool:
        """Wait until no job is pending or running (for tests and shutdown); True if idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                threads = list(self._threads.values())
            if not threads:
                return True
            threads[0].join(max(0.0, min(0.2, deadline - time.monotonic())))
        return False


def _finish(ctx: Context, job: Job, outcome: str, started: float | None = None) -> None:
    """Record a final outcome, unless the worker already did."""

    current = next((e.get("outcome", "") for e in reversed(deliveries(ctx, job.app))
                    if e.get("delivery") == job.delivery and e.get("accepted")), "")
    if not str(current).startswith(FINAL):
        update_delivery(ctx, job.app, job.delivery, outcome=outcome)
        record(ctx, job, outcome, started)


def run_in_worker(ctx: Context, job: Job) -> None:
    """Run `job` in `python -m gitserver.webhook_deploy` and wait for it."""
    from pushdock.settings import as_env  # noqa: PLC0415 -- start-up: loads only when this path runs

    started = time.time()
    env = {**os.environ, **as_env(ctx.settings), JOB_VARIABLE: json.dumps(asdict(job))}
    with open(os.devnull, "rb") as devnull_in, open(os.devnull, "wb") as devnull_out:
        worker = proc.popen([sys.executable, "-m", "gitserver.webhook_deploy"], env=env, stdin=devnull_in,
                            stdout=devnull_out, stderr=devnull_out, start_new_session=True)
        rc = worker.wait()
    if rc != 0:
        _finish(ctx, job, f"failed: worker exited {rc} (see DATA_DIR/logs/pushdock.log)", started)


# -- the job (in the worker) -------------------------------------------------------------------------------
def run_job(ctx: Context, job: Job) -> str:
    """Fetch and deploy `job`; record and return its outcome (`deployed vN`, `already deployed`, `failed: ...`)."""

    started = time.time()
    with logger.contextualize(app=job.app, delivery=job.delivery):
        try:
            update_delivery(ctx, job.app, job.delivery, outcome="fetching")
            _fetch(ctx, job)
            update_delivery(ctx, job.app, job.delivery, outcome="deploying")
            outcome = _deploy(ctx, job)
        except PushdockError as e:
            outcome = f"failed: {e}"
        logger.info("webhook deploy done", outcome=outcome)
        update_delivery(ctx, job.app, job.delivery, outcome=outcome)
        record(ctx, job, outcome, started)
        return outcome


def _fetch(ctx: Context, job: Job) -> None:
    """Bring commit `job.after` into the app's repository from the configured repository."""
    from dulwich.client import get_transport_and_path_from_url  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.objects import ObjectID  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.refs import Ref  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    token = get_setting(ctx, job.app, "token")
    repo = Repo(str(ctx.state.repo_path(job.app)))
    after, ref = ObjectID(job.after.encode()), Ref(job.ref.encode())
    try:
        if after in repo.object_store:
            return
        client, path = get_transport_and_path_from_url(
            job.repo, username="x-access-token" if token else None, password=token, quiet=True)

        def wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            tip = refs.get(ref)
            return [tip] if tip is not None and tip not in repo.object_store else []

        client.fetch(path, repo, determine_wants=wants)
    except Exception as e:  # the network, the remote, the credentials: all mean "cannot fetch", said once
        logger.warning("webhook fetch failed", repo=job.repo, error=repr(e))
        raise PushdockError(f"cannot fetch from {job.repo}: {type(e).__name__}") from None
    finally:
        present = after in repo.object_store
        repo.close()
    if not present:
        raise PushdockError(f"commit {job.after[:7]} is not on {job.branch} at {job.repo} (moved on?)")


def _deploy(ctx: Context, job: Job) -> str:
    """The push path, under the app lock: checks, deploy, compare-and-swap of the branch."""
    from dulwich.objects import Commit, ObjectID  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.protocol import ZERO_SHA  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.refs import HEADREF, Ref  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    from gitserver import configref  # noqa: PLC0415 -- memory: serve imports this module, the deploy worker runs this
    from gitserver.connectivity import Unconnected, check_connected  # noqa: PLC0415 -- memory: as above

    state, app = ctx.state, job.app
    after, ref = ObjectID(job.after.encode()), Ref(job.ref.encode())
    with state.app_lock(app, timeout=ctx.settings.lock_timeout):
        if state.get("apps", app, "locked"):
            return f"failed: deploys of {app} are locked (run apps:unlock {app})"
        repo = Repo(str(state.repo_path(app)))
        try:
            refs = {k: v for k, v in repo.get_refs().items() if k != HEADREF}
            current = refs.get(ref, ZERO_SHA)
            release = state.current_release(app)
            if current == after and release is not None and release.sha == job.after:
                return f"already deployed ({release.name})"
            stale = rollback_reason(ctx, app, job.ref, job.after)  # again: the app may have moved on meanwhile
            if stale is not None:
                return stale
            if not isinstance(repo[after], Commit):
                return f"failed: {job.after[:7]} is not a commit"
            try:
                check_connected(repo.object_store, [after], list(refs.values()), repo.get_shallow())
            except Unconnected as e:
                return f"failed: bad fetch: {e}"
            progress = Progress(lambda line: logger.debug("webhook deploy output", line=line),
                                logfile=state.deploy_log(app))
            try:
                progress.step(f"GitHub push {job.delivery} by {job.pusher or 'unknown'}: {job.branch} "
                              f"{job.after[:7]} from {job.repo}")
                deployed = pipeline.deploy_push(ctx, app, job.after, progress, branch=job.branch)
            finally:
                progress.close()
            if not repo.refs.set_if_equals(ref, current, after):
                return f"deployed {deployed.name}, but {job.branch} moved meanwhile: the ref was left as it is"
            if not state.get("git", app, "deploy-branch"):
                state.set("git", app, "deploy-branch", job.branch)
                repo.refs.set_symbolic_ref(HEADREF, ref)
                configref.commit_state(ctx, app, repo, f"webhook: deploy branch {job.branch}")
            return f"deployed {deployed.name}"
        finally:
            repo.close()


def main() -> int:
    try:
        settings = Settings()
        job = Job(**json.loads(os.environ[JOB_VARIABLE]))
        ctx = Context(settings=settings, identity=Identity(name=IDENTITY, role="admin", door=DOOR))
        log.configure(settings.log_level, logfile=ctx.state.path("logs", "pushdock.log"), stderr=False)
    except Exception as e:  # no context, no log file
        sys.stderr.write(f"fatal: {e}\n")
        return 2
    try:
        outcome = run_job(ctx, job)
    except Exception:
        _finish(ctx, job, f"failed: {internal_error('webhook worker crashed', app=job.app)}")
        return 1
    return 0 if outcome.startswith(("deployed", "already", "ignored")) else 1


if __name__ == "__main__":
    raise SystemExit(main())
