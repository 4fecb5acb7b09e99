"""The work of previews, one worker process per action (`python -m previews.deploy`), so a delivery is answered
at once and a deploy under way outlives `serve`: deploy a PR's head as `APP-pr-N`, or destroy it.

One preview's workers take turns on a lock (`preview-APP-pr-N`), and each deploys the head recorded when it gets
the lock: a burst of `synchronize` deliveries ends with the newest head deployed, the others finding it there.
A new preview is the parent's copy: its repository and settings but not its domains, ports, certificates,
webhook, storage mounts, docker options or networks (they would reach the parent's data); its env without the
parent's secrets (model.py); scale at most 1 per process type; its own services (`clone-app-services`). The
parent is read, never changed. Each step is an audit event (`previews:*`) and a commit status on the head.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from loguru import logger

from hooks import pipeline
from previews import model
from pushdock import log, proc
from pushdock.apps import CLONE_SKIPS, destroy_app
from pushdock.context import Context
from pushdock.errors import PushdockError
from pushdock.progress import Progress
from pushdock.settings import Settings, as_env
from pushdock.state import Identity

if TYPE_CHECKING:
    from pushdock.context import Context

JOB_VARIABLE = "PUSHDOCK_PREVIEW_JOB"
IDENTITY = "previews"
# What a preview does not take from its parent, besides what apps:clone leaves: storage mounts, docker options
# (`-v` binds) and attached networks all lead to the parent's data or neighbours.
SKIPS = CLONE_SKIPS | {"storage", "docker-options", "network"}
RESUME_AFTER = 60.0  # seconds a record may stay queued with its lock free: its worker is still starting


@dataclass(frozen=True)
class Job:
    app: str  # the parent
    pr: int
    action: str  # deploy | close | expire
    delivery: str = ""
    who: str = IDENTITY
    door: str = "http"


def as_previews(ctx: Context, door: str, who: str = IDENTITY) -> Context:
    """`ctx` acting as the previews plugin: the who and door of its audit events."""
    return dataclasses.replace(ctx, identity=Identity(name=who, role="admin", door=door),
                               bus_override=ctx.bus)


def spawn(ctx: Context, job: Job) -> None:
    """Start `job` in its own worker process (own session: it outlives serve); reaped by a thread."""
    env = {**os.environ, **as_env(ctx.settings), JOB_VARIABLE: json.dumps(asdict(job))}
    with open(os.devnull, "rb") as devnull_in, open(os.devnull, "wb") as devnull_out:
        worker = proc.popen([sys.executable, "-m", "previews.deploy"], env=env, stdin=devnull_in,
                            stdout=devnull_out, stderr=devnull_out, start_new_session=True)
    threading.Thread(target=worker.wait, name=f"preview-{job.app}-{job.pr}", daemon=True).start()


def run(ctx: Context, job: Job) -> str:
    """Do `job`; its outcome (also in its event)."""
    with logger.contextualize(app=job.app, pr=job.pr, delivery=job.delivery):
        if job.action == "deploy":
            return deploy(ctx, job.app, job.pr)
        return close(ctx, job.app, job.pr, reason=job.action)


def url_of(ctx: Context, name: str) -> str:
    port = ctx.settings.proxy_port
    return f"http://{ctx.domains(name)[0]}" + ("" if port == 80 else f":{port}")


def _status(ctx: Context, app: str, sha: str, *, state: str, description: str, target_url: str = "") -> None:
    try:
        ctx.bus.call("commit_status", ctx=ctx, app=app, sha=sha, state=state, description=description,
                     target_url=target_url)
    except PushdockError as e:  # best effort: a status never fails a deploy
        logger.warning("commit status failed", app=app, error=e.message)


def deploy(ctx: Context, app: str, pr: int) -> str:
    """Deploy the recorded head of pull request `pr` as its preview (made first if need be)."""
    name = model.preview_app(app, pr)
    with ctx.state.global_lock(f"preview-{name}"):
        preview = model.get(ctx, app, pr)
        if preview is None:
            return "ignored: the pull request was closed"
        if not preview.runnable:
            return f"ignored: {model.WAITING}"
        sha = preview.head
        if preview.deployed == sha and preview.state == model.DEPLOYED and ctx.state.app_exists(name):
            return f"already deployed ({sha[:7]})"
        started = time.time()
        model.update(ctx, app, pr, state=model.DEPLOYING)
        _status(ctx, app, sha, state="pending", description=f"deploying preview {name}")
        try:
            if preview.making and ctx.state.app_exists(name):  # its worker died while making it: start again
                logger.warning("half-made preview removed", app=app, pr=pr, preview=name)
                _remove(ctx, name, preview.services)
            if not ctx.state.app_exists(name):
                _create(ctx, app, name, pr)
            release = _deploy_head(ctx, app, name, pr, sha)
        except PushdockError as e:
            outcome = f"failed: {e.message}"
            model.update(ctx, app, pr, state=outcome)
            _status(ctx, app, sha, state="failure", description=outcome)
            ctx.event("previews:deploy", app=app, result="failed", started=started, pr=pr, preview=name, sha=sha,
                      reason=e.message)
            return outcome
        url = url_of(ctx, name)
        with model.locked(ctx, app):
            now = model.get(ctx, app, pr)
            if now is not None:
                moved = now.head != sha  # a newer head came meanwhile: its worker is waiting on the lock
                model.save(ctx, app, dataclasses.replace(now, deployed=sha,
                                                         state=model.QUEUED if moved else model.DEPLOYED))
        _status(ctx, app, sha, state="success", description=f"preview {name} deployed ({release})", target_url=url)
        ctx.event("previews:deploy", app=app, started=started, pr=pr, preview=name, sha=sha, release=release,
                  url=url)
        return f"deployed {release}"


def _create(ctx: Context, app: str, name: str, pr: int) -> None:
    """The preview app: the parent's copy (SKIPS), its env, scale and own services; all undone if a step fails."""
    state, conf = ctx.state, model.settings(ctx, app)
    model.update(ctx, app, pr, making=True)  # until the end: a worker killed half-way leaves it for the next
    with state.app_lock(app, timeout=ctx.settings.lock_timeout):  # a consistent copy: no deploy of it meanwhile
        state.clone_app(app, name, skip=SKIPS)
        parent_env = state.get_env(app)
        formation = state.get_formation(app) or {}
    services: list[str] = []
    try:
        state.delete("ps", name, "stopped")
        state.set_env(name, model.preview_env(parent_env, conf))
        state.set_formation(name, {kind: min(1, int(n)) for kind, n in formation.items()})
        ctx.bus.call("post_create", ctx=ctx, app=name)
        for part in ctx.bus.call("clone_app_services", ctx=ctx, source_app=app, app=name, data=conf.database):
            services.extend(part or [])
        model.update(ctx, app, pr, services=tuple(services), making=False)
    except BaseException:
        _remove(ctx, name, services)
        model.update(ctx, app, pr, making=False)
        raise
    ctx.event("previews:create", app=app, pr=pr, preview=name, database=conf.database,
              services=",".join(services))


def _deploy_head(ctx: Context, app: str, name: str, pr: int, sha: str) -> str:
    """Fetch the PR's head into the preview's repository and deploy it (zero downtime: the push path)."""
    from dulwich.objects import ObjectID  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.refs import Ref  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    why = ctx.bus.first("fetch_commit", ctx=ctx, app=app, into=name, ref=f"refs/pull/{pr}/head", sha=sha)
    if why:
        raise PushdockError(str(why))
    repo = Repo(str(ctx.state.repo_path(name)))
    try:
        commit = ObjectID(sha.encode())
        if commit not in repo.object_store:
            raise PushdockError(f"commit {sha[:7]} could not be fetched")
        branch = ctx.state.get("git", name, "deploy-branch") or "main"
        with ctx.state.app_lock(name, timeout=ctx.settings.lock_timeout):
            progress = Progress(lambda line: logger.debug("preview deploy output", line=line),
                                logfile=ctx.state.deploy_log(name))
            try:
                progress.step(f"Preview of pull request #{pr} of {app}: {sha[:7]}")
                release = pipeline.deploy_push(ctx, name, sha, progress, branch=branch)
            finally:
                progress.close()
            repo.refs[Ref(f"refs/heads/{branch}".encode())] = commit
        return release.name
    finally:
        repo.close()


def _remove(ctx: Context, name: str, services: list[str] | tuple[str, ...]) -> None:
    """The preview app and its services: those it has on record, and any made for it that a worker killed
    half-way never recorded."""
    if ctx.state.app_exists(name):
        destroy_app(ctx, name)
    made = [s for part in ctx.bus.call("app_copy_services", ctx=ctx, app=name) for s in part or []]
    if every := list(dict.fromkeys([*services, *made])):
        ctx.bus.call("destroy_app_services", ctx=ctx, services=every)


def close(ctx: Context, app: str, pr: int, *, reason: str, name: str | None = None) -> str:
    """Destroy the preview (app, containers, routes, services) and forget it; `reason`: closed or expired.
    `name`: the preview app's name when it is not APP-pr-N (its parent was renamed)."""
    name = name or model.preview_app(app, pr)
    started = time.time()
    with ctx.state.global_lock(f"preview-{name}"):
        preview = model.get(ctx, app, pr)
        existed = ctx.state.app_exists(name)
        _remove(ctx, name, preview.services if preview else ())
        with model.locked(ctx, app):
            model.drop(ctx, app, pr)
    outcome = f"destroyed {name}" if existed else f"forgot pull request #{pr}"
    ctx.event(f"previews:{'expire' if reason == 'expire' else 'destroy'}", app=app, started=started, pr=pr,
              preview=name, reason=reason, outcome=outcome)
    return outcome


def expire(ctx: Context, now: float | None = None) -> list[str]:
    """The timer's job: destroy every preview without a new commit for its parent's ttl; their names."""
    gone = []
    for app in model.parents(ctx):
        conf = model.settings(ctx, app)
        for pr, preview in sorted(model.records(ctx, app).items()):
            if model.expired(preview, conf, now):
                try:
                    close(ctx, app, pr, reason="expire")
                    gone.append(model.preview_app(app, pr))
                except PushdockError as e:
                    logger.error("preview not expired", app=app, pr=pr, error=e.message)
    return gone


def resume(ctx: Context, now: float | None = None, start: Callable[[Context, Job], None] | None = None) -> list[str]:
    """The timer's job: a new worker for each preview whose worker died (a reboot, the OOM killer): its record is
    still deploying, or queued for longer than RESUME_AFTER, while no worker holds or waits for its lock (a
    deploying worker holds it; one waiting behind it means it is held). The new worker deploys the recorded
    head as any other would; one that finds it deployed does nothing. The previews resumed."""
    now = time.time() if now is None else now
    resumed = []
    for app in model.parents(ctx):
        for pr, preview in sorted(model.records(ctx, app).items()):
            stale = preview.state == model.DEPLOYING or (
                preview.state == model.QUEUED and now - max(preview.updated, preview.opened) > RESUME_AFTER)
            if not stale or not preview.runnable:
                continue
            name = model.preview_app(app, pr)
            if ctx.state.global_lock_held(f"preview-{name}"):
                continue
            logger.warning("preview worker gone: deploying again", app=app, pr=pr, state=preview.state)
            job = Job(app=app, pr=pr, action="deploy", who=IDENTITY, door=ctx.identity.door)
            (spawn if start is None else start)(ctx, job)
            resumed.append(name)
    return resumed


def main() -> int:
    try:
        settings = Settings()
        job = Job(**json.loads(os.environ[JOB_VARIABLE]))
        ctx = Context(settings=settings, identity=Identity(name=job.who, role="admin", door=job.door))
        log.configure(settings.log_level, logfile=ctx.state.path("logs", "pushdock.log"), stderr=False)
    except Exception as e:  # no context, no log file
        sys.stderr.write(f"fatal: {e}\n")
        return 2
    try:
        outcome = run(ctx, job)
    except Exception:
        error_id = uuid.uuid4().hex[:8]
        logger.exception("preview worker crashed", app=job.app, pr=job.pr, error_id=error_id)
        model.update(ctx, job.app, job.pr, state=f"failed: internal error {error_id}")
        return 1
    logger.info("preview job done", app=job.app, pr=job.pr, action=job.action, outcome=outcome)
    return 0 if not outcome.startswith("failed") else 1


if __name__ == "__main__":
    raise SystemExit(main())
