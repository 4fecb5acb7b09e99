"""What a `pull_request` delivery decides, answered at once: the record updated and, if there is work, a worker
started (deploy.py). Called by the `webhook-event` trigger with the verified event and payload: no HTTP here.

| action | what happens |
|---|---|
| opened, reopened, synchronize | the head recorded; deployed by a worker, unless the PR comes from a fork and |
| | this head is not approved (`previews:approve APP N`), or `max` previews are open already |
| closed | a worker destroys the preview app and its services |
| others (edited, labeled...) | ignored |
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from loguru import logger

from previews import deploy, model
from pushdock.errors import UsageError

if TYPE_CHECKING:
    from pushdock.context import Context

DEPLOYING = ("opened", "reopened", "synchronize")
SHA = re.compile(r"^[0-9a-f]{40}\Z")


def handle(ctx: Context, app: str, event: str, delivery: str, payload: dict[str, Any], *,
           start: Callable[[Context, deploy.Job], None] = deploy.spawn) -> tuple[int, str] | None:
    """(status, outcome) for a verified `pull_request` delivery to `app`; None for other events. `start` runs a
    job (a worker process; unit tests record them instead)."""
    if event != "pull_request":
        return None
    action = payload.get("action")
    pr = payload.get("number")
    pull = payload.get("pull_request")
    head = pull.get("head") if isinstance(pull, dict) else None
    sha = head.get("sha") if isinstance(head, dict) else None
    if not (isinstance(action, str) and isinstance(pr, int) and not isinstance(pr, bool) and 0 < pr < 10**9
            and isinstance(head, dict) and isinstance(sha, str) and SHA.match(sha)):
        return 400, "not a GitHub pull_request payload (action, number and pull_request.head.sha are needed)"
    try:
        name = model.preview_app(app, pr)
    except UsageError:
        return 202, f"ignored: {app}{model.SECTION}{pr} is too long for an app name"
    if action == "closed":  # even with previews disabled since: an open preview must not outlive its PR
        if model.get(ctx, app, pr) is None and not ctx.state.app_exists(name):
            return 202, f"ignored: no preview of pull request #{pr}"
        start(ctx, deploy.Job(app=app, pr=pr, action="close", delivery=delivery))
        return 202, f"queued: close {name}"
    if not model.enabled(ctx, app):
        return 202, f"ignored: previews are not enabled for {app} (previews:enable {app})"
    if action not in DEPLOYING:
        return 202, f"ignored: pull_request {action[:40]}"
    fork = _is_fork(payload, head)
    title = str(pull.get("title", ""))[:100] if isinstance(pull, dict) else ""
    conf = model.settings(ctx, app)
    now = time.time()
    with model.locked(ctx, app):
        records = model.records(ctx, app)
        current = records.get(pr)
        open_others = [p for n, p in records.items() if n != pr]
        if current is None and len(open_others) >= conf.max:
            outcome = f"ignored: {conf.max} previews of {app} are open already (previews:set {app} max N)"
            _status_later(ctx, app, sha, "failure", f"not deployed: at most {conf.max} previews at once")
            _event(ctx, app, pr, "previews:refuse", sha=sha, result="refused", outcome=outcome)
            return 202, outcome
        if current is None:
            current = model.Preview(pr=pr, head=sha, fork=fork, opened=now, updated=now, title=title)
        elif current.head != sha:
            current = replace(current, head=sha, updated=now, fork=fork, title=title or current.title)
        current = replace(current, state=model.QUEUED if current.runnable else model.WAITING)
        model.save(ctx, app, current)
    if not current.runnable:
        _status_later(ctx, app, sha, "pending", f"waiting for approval: previews:approve {app} {pr}")
        _event(ctx, app, pr, "previews:wait", sha=sha, result="ignored", outcome=model.WAITING)
        return 202, f"waiting: pull request #{pr} comes from a fork; previews:approve {app} {pr} deploys {sha[:7]}"
    start(ctx, deploy.Job(app=app, pr=pr, action="deploy", delivery=delivery))
    return 202, f"queued: {name} at {sha[:7]}"


def _is_fork(payload: dict[str, Any], head: dict[str, Any]) -> bool:
    """A head in another repository than the base (or in a deleted one): its code is untrusted."""
    repo = head.get("repo")
    base = payload.get("repository")
    if not isinstance(base, dict):
        base = {}
    if not isinstance(repo, dict):
        return True
    return repo.get("fork") is True or str(repo.get("full_name", "")).lower() != str(base.get("full_name", "")).lower()


def _status_later(ctx: Context, app: str, sha: str, state: str, description: str) -> None:
    """A commit status posted from a thread: GitHub's delivery must not wait on GitHub's API."""
    def post() -> None:
        try:
            ctx.bus.call("commit_status", ctx=ctx, app=app, sha=sha, state=state, description=description,
                         target_url="")
        except Exception:  # best effort, as the trigger's contract says; logged
            logger.exception("commit status failed", app=app)

    threading.Thread(target=post, name=f"status-{app}", daemon=True).start()


def _event(ctx: Context, app: str, pr: int, action: str, *, sha: str, result: str, outcome: str) -> None:
    deploy.as_previews(ctx, "http").event(action, app=app, result=result, pr=pr, sha=sha, outcome=outcome)
