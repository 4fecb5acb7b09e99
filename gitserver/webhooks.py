"""GitHub push webhooks: `POST /webhooks/github/APP` (the receiving side; deploys: webhook_deploy.py).

Order of checks, each answered at once and nothing deployed unless all pass: an app with a secret (404),
body size (413, by the router), `X-Hub-Signature-256` = HMAC-SHA256 of the raw body compared in constant
time (401), `Content-Type: application/json` (415), a delivery id (400), a delivery already accepted (200,
duplicate), `ping` (200), the payload's repository = the one set with
`webhooks:set APP repo URL` (403), a deleted branch or another branch than the deploy branch (202, ignored).
Events other than push (a `pull_request`) pass the same checks, then go to the `webhook-event` trigger
(previews/ handles pull requests); an event nobody handles is answered 202 and ignored.
A push whose commit is the deployed one's ancestor (already in the app's repository) is answered 202 and
ignored: a webhook never rolls an app back, whatever delivery carries it (the worker checks again under the
lock). A push that passes is answered 202 and queued. Every answer lands in the app's delivery log
(`webhooks:report`, the last DELIVERY_LOG_SIZE; refused entries leave it first).

Deduplication has its own record (`webhooks/APP/seen`): the delivery id and, for a push, the digest of the
signed body of every accepted delivery (signed, answered 2xx), kept for DEDUPE_SECONDS (GitHub retries for
7 days). Unsigned deliveries never enter it, so no flood can flush it; the body digest catches a captured
delivery re-sent under a new id (the id header is not signed); a delivery refused for a setting since fixed
can be redelivered.

Every delivery to an existing app is also an audit event (`webhook`; who `github-webhook`, door `http`):
its delivery id, GitHub event, status, outcome, result (`ok`, `ignored`, `queued`, `duplicate`, `denied`
for a bad or missing signature, `refused`) and duration; a deploy it queued adds a `webhook:deploy` event
when it ends (webhook_deploy.py). Never the secret, the signature or the body. Requests for apps that do
not exist, and bodies the router refuses (411, 413), are only logged.

Per app: `repo` and `api` (the API base URL commit statuses go to: github.py) are properties; `secret` and
`token` live in a 0600 file and are never shown or logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from gitserver.webhook_deploy import Job, as_webhook, deploy_branch, rollback_reason
from gitserver.webhook_store import append, get_setting, normalise_repo
from pushdock.errors import NotFound, UsageError
from pushdock.httproutes import HttpError, Request, Response, json_response
from pushdock.state import validate_app_name

if TYPE_CHECKING:

    from gitserver.webhook_deploy import DeployQueue
    from pushdock.context import Context

MAX_BODY = 1024 * 1024
DELIVERY_ID = re.compile(r"^[A-Za-z0-9-]{1,100}\Z")
ZERO = "0" * 40
SHA = re.compile(r"^[0-9a-f]{40}\Z")
# Events whose signed body is remembered too: re-sent under a new id, a push or a pull request's `opened` after
# its `closed` would act again.
BODY_DEDUPED = ("push", "pull_request")
NOT_CONFIGURED = "no webhook is configured for this app"


# -- verification ----------------------------------------------------------------------------------------
def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    """GitHub's X-Hub-Signature-256: `sha256=` + HMAC-SHA256(secret, raw body), compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


class GithubWebhook:
    """`POST /webhooks/github/APP`: a Router handler that queues deploys on `queue`."""

    def __init__(self, queue: DeployQueue) -> None:
        self.queue = queue

    def __call__(self, ctx: Context, request: Request) -> Response:
        started = time.time()
        app = request.params["app"]
        headers = request.headers
        entry: dict[str, Any] = {"delivery": headers.get("x-github-delivery", "")[:100], "time": started,
                                 "event": headers.get("x-github-event", "")[:40], "accepted": False}
        try:
            validate_app_name(app)
        except UsageError:
            logger.info("webhook for no app", delivery=entry["delivery"])
            raise NotFound(NOT_CONFIGURED) from None
        if not ctx.state.app_exists(app):
            logger.info("webhook for no app", app=app, delivery=entry["delivery"])
            raise NotFound(NOT_CONFIGURED)
        secret = get_setting(ctx, app, "secret")
        if not secret:
            _record(ctx, app, {**entry, "status": 404, "outcome": NOT_CONFIGURED}, started, "refused")
            raise NotFound(NOT_CONFIGURED)
        signature = headers.get("x-hub-signature-256")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if not signature:
            status, outcome, job = 401, "missing X-Hub-Signature-256: set the webhook's secret on GitHub", None
        elif not signature_ok(request.body, signature, secret):
            status, outcome, job = 401, "bad signature: the secrets differ, or the body was changed", None
        elif content_type != "application/json":
            status, outcome, job = 415, "content type must be application/json (set it in the webhook's settings)", None
        elif not DELIVERY_ID.match(entry["delivery"]):
            status, outcome, job = 400, "missing or malformed X-GitHub-Delivery", None
        else:
            status, outcome, job = _decide(ctx, app, entry["event"], request.body, entry["delivery"])
        if job is not None:
            entry.update(ref=job.ref, sha=job.after)
        entry.update(status=status, outcome=outcome, accepted=status < 400)
        body_key = (f"body:{hashlib.sha256(request.body).hexdigest()}" if entry["event"] in BODY_DEDUPED
                    else None)
        earlier = append(ctx, app, entry, body_key)
        logger.info("webhook delivery", app=app, delivery=entry["delivery"], status=entry["status"],
                    outcome=entry["outcome"])
        _record(ctx, app, entry, started, _result(entry, earlier is not None, job is not None))
        if earlier is not None:
            return json_response(200, {"status": entry["outcome"], "outcome": earlier.get("outcome")})
        if status >= 400:
            raise HttpError(status, outcome)
        if job is not None:
            self.queue.submit(job)
            return json_response(status, {"status": outcome, "delivery": job.delivery, "sha": job.after})
        return json_response(status, {"status": outcome})


def _result(entry: dict[str, Any], duplicate: bool, queued: bool) -> str:
    """The event's one-word result for a delivery's entry."""
    status = entry["status"]
    if duplicate:
        return "duplicate"
    if status == 401:
        return "denied"
    if status >= 400:
        return "refused"
    if queued:
        return "queued"
    return "ignored" if str(entry["outcome"]).startswith("ignored") else "ok"


def _record(ctx: Context, app: str, entry: dict[str, Any], started: float, result: str) -> None:
    """The audit event of one delivery; a full disk must not change GitHub's answer, so it is only logged."""

    fields = {k: entry[k] for k in ("delivery", "event", "status", "outcome", "ref", "sha") if entry.get(k)}
    try:
        as_webhook(ctx, app).event("webhook", app=app, result=result, started=started, **fields)
    except OSError as e:
        logger.error("webhook event not recorded", app=app, delivery=entry["delivery"], error=repr(e))


def _decide(ctx: Context, app: str, event: str, body: bytes, delivery: str) -> tuple[int, str, Any]:
    """(status, outcome, Job or None) for a signed delivery; no side effects."""

    if event == "ping":
        return 200, "pong", None
    try:
        payload = json.loads(body)
    except ValueError:
        return 400, "the body is not JSON", None
    payload = payload if isinstance(payload, dict) else {}
    if event != "push":
        return _other_event(ctx, app, event, payload, delivery)
    repository = _object(payload, "repository")
    clone_url, ref, after = repository.get("clone_url"), payload.get("ref"), payload.get("after") or ZERO
    deleted = payload.get("deleted") is True
    if not (isinstance(clone_url, str) and isinstance(ref, str) and isinstance(after, str)):
        return 400, "not a GitHub push payload (ref, after and repository.clone_url are needed)", None
    configured = get_setting(ctx, app, "repo")
    if not configured:
        return 403, "no repository is set for this app (webhooks:set APP repo URL)", None
    if normalise_repo(clone_url) != normalise_repo(configured):
        return 403, "the payload names another repository than the one set for this app", None
    if deleted or after == ZERO:
        return 202, "ignored: the branch was deleted", None
    branch = deploy_branch(ctx, app)
    if ref != f"refs/heads/{branch}":
        return 202, f"ignored: {ref} is not the deploy branch ({branch})", None
    if not SHA.match(after):
        return 400, "payload's `after` is not a commit id", None
    stale = rollback_reason(ctx, app, ref, after)
    if stale is not None:
        return 202, stale, None
    pusher = _object(payload, "pusher")
    return 202, "queued", Job(app=app, delivery=delivery, ref=ref, after=after, repo=configured,
                             pusher=str(pusher.get("name", ""))[:64])


def _object(payload: dict[str, Any], key: str) -> dict[str, Any]:
    """`payload[key]` if it is a JSON object, else {} (a payload's shape is not trusted)."""
    value = payload.get(key)
    return value if isinstance(value, dict) else {}


def _other_event(ctx: Context, app: str, event: str, payload: dict[str, Any], delivery: str) -> tuple[int, str, Any]:
    """An event push does not cover (`pull_request`): its repository checked as a push's, then handed to the
    `webhook-event` trigger (previews/); nobody handling it is `ignored`."""
    repository = _object(payload, "repository")
    clone_url = repository.get("clone_url")
    configured = get_setting(ctx, app, "repo")
    if isinstance(clone_url, str) and configured:
        if normalise_repo(clone_url) != normalise_repo(configured):
            return 403, "the payload names another repository than the one set for this app", None
        for answer in ctx.bus.call("webhook_event", ctx=ctx, app=app, event=event, delivery=delivery,
                                   payload=payload):
            if answer is not None:
                status, outcome = answer
                return int(status), str(outcome), None
    elif event == "pull_request":
        if not configured:
            return 403, "no repository is set for this app (webhooks:set APP repo URL)", None
        return 400, "not a GitHub pull_request payload (repository.clone_url is needed)", None
    return 202, f"ignored: {event or 'no'} event (only push deploys)", None
