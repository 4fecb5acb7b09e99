"""GitHub webhooks over real HTTP: verification, every bad input, dedupe, coalescing, the fetch from a local
"GitHub" (a bare repo served by dulwich.web on 127.0.0.1). The deploy itself needs docker: the queue here runs
a recording function instead of the worker process (tests/e2e/test_webhooks.py runs the real one)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_server, make_wsgi_chain

from gitserver import webhook_store, webhooks
from gitserver.http import routes
from gitserver.webhook_deploy import DeployQueue, Job, _fetch, run_job
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.errors import PushdockError
from web.door import HttpDoor

APP = "hooked"
SECRET = "It's a Secret to Everybody"
REPO = "https://github.com/octo/hooked.git"


class Recorder:
    """A queue runner that records jobs; `gate` holds the first one until set."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, ctx: Context, job: Job) -> None:
        self.jobs.append(job)
        self.started.set()
        assert self.gate.wait(10)
        webhook_store.update_delivery(ctx, job.app, job.delivery, outcome="deployed v9")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def queue(ctx: Context, recorder: Recorder) -> DeployQueue:
    return DeployQueue(ctx, run=recorder)


@pytest.fixture
def door(ctx: Context, queue: DeployQueue) -> Iterator[int]:
    ctx.state.create_app(APP)
    webhook_store.set_setting(ctx, APP, "secret", SECRET)
    webhook_store.set_setting(ctx, APP, "repo", REPO)
    d = HttpDoor(ctx, routes=routes(ctx, queue))
    d.start()
    yield d.address[1]
    d.stop()


def payload(**changes: Any) -> dict[str, Any]:
    body = {"ref": "refs/heads/main", "before": "a" * 40, "after": "b" * 40, "created": False, "deleted": False,
            "repository": {"full_name": "octo/hooked", "clone_url": REPO}, "pusher": {"name": "octocat"}}
    return body | changes


def post(port: int, body: bytes | dict[str, Any], *, event: str = "push", delivery: str | None = None,
         secret: str | None = SECRET, content_type: str = "application/json", app: str = APP,
         signature: str | None = None) -> tuple[int, dict[str, Any]]:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": content_type, "X-GitHub-Event": event,
               "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "User-Agent": "GitHub-Hookshot/test"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", f"/webhooks/github/{app}", body=raw, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def outcomes(ctx: Context) -> list[tuple[int, str]]:
    return [(d["status"], d["outcome"]) for d in webhook_store.deliveries(ctx, APP)]


def test_github_test_vector() -> None:
    sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert webhooks.signature_ok(b"Hello, World!", sig, SECRET)
    assert not webhooks.signature_ok(b"Hello, World?", sig, SECRET)
    assert not webhooks.signature_ok(b"Hello, World!", sig.replace("sha256=", "sha1="), SECRET)
    assert not webhooks.signature_ok(b"Hello, World!", None, SECRET)


def test_ping_and_a_push_to_the_deploy_branch(ctx: Context, door: int, queue: DeployQueue,
                                              recorder: Recorder) -> None:
    assert post(door, {"zen": "Keep it logically awesome.", "hook_id": 1}, event="ping") == (200, {"status": "pong"})
    status, answer = post(door, payload(), delivery="d-1")
    assert (status, answer) == (202, {"status": "queued", "delivery": "d-1", "sha": "b" * 40})
    assert queue.idle(10)
    assert recorder.jobs == [Job(app=APP, delivery="d-1", ref="refs/heads/main", after="b" * 40, repo=REPO,
                                 pusher="octocat")]
    assert outcomes(ctx) == [(200, "pong"), (202, "deployed v9")]


@pytest.mark.parametrize(("kwargs", "status", "error"), [
    ({"secret": None}, 401, "missing X-Hub-Signature-256: set the webhook's secret on GitHub"),
    ({"secret": "another secret of the same length"}, 401, "bad signature: the secrets differ, or the body was changed"),
    ({"signature": "sha256=zz"}, 401, "bad signature: the secrets differ, or the body was changed"),
    ({"content_type": "application/x-www-form-urlencoded"}, 415,
     "content type must be application/json (set it in the webhook's settings)"),
    ({"delivery": "../x"}, 400, "missing or malformed X-GitHub-Delivery"),
])
def test_bad_requests_are_refused(ctx: Context, door: int, recorder: Recorder, kwargs: dict[str, Any], status: int,
                                  error: str) -> None:
    assert post(door, payload(), **kwargs) == (status, {"error": error})
    assert recorder.jobs == []
    assert outcomes(ctx) == [(status, error)]


@pytest.mark.parametrize(("body", "status", "answer"), [
    (payload(repository={"clone_url": "https://github.com/evil/hooked.git"}), 403,
     {"error": "the payload names another repository than the one set for this app"}),
    (payload(ref="refs/heads/feature"), 202, {"status": "ignored: refs/heads/feature is not the deploy branch (main)"}),
    (payload(ref="refs/tags/v1"), 202, {"status": "ignored: refs/tags/v1 is not the deploy branch (main)"}),
    (payload(deleted=True, after="0" * 40), 202, {"status": "ignored: the branch was deleted"}),
    (payload(after="not-a-sha"), 400, {"error": "payload's `after` is not a commit id"}),
    ({"zen": "no ref"}, 400, {"error": "not a GitHub push payload (ref, after and repository.clone_url are needed)"}),
    (payload(repository="octo/hooked"), 400,
     {"error": "not a GitHub push payload (ref, after and repository.clone_url are needed)"}),
])
def test_pushes_that_do_not_deploy(ctx: Context, door: int, recorder: Recorder, body: dict[str, Any], status: int,
                                   answer: dict[str, str]) -> None:
    assert post(door, body) == (status, answer)
    assert recorder.jobs == []


def test_other_events_and_unknown_apps(ctx: Context, door: int, recorder: Recorder) -> None:
    assert post(door, {"action": "opened"}, event="issues") == (
        202, {"status": "ignored: issues event (only push deploys)"})
    assert post(door, b"{not json", event="push") == (400, {"error": "the body is not JSON"})
    assert post(door, b"[1, 2]", event="push")[0] == 400
    assert post(door, payload(), app="nosuch") == (404, {"error": "no webhook is configured for this app"})
    assert post(door, payload(), app="Bad..Name") == (404, {"error": "no webhook is configured for this app"})
    ctx.state.create_app("nosecret")
    assert post(door, payload(), app="nosecret") == (404, {"error": "no webhook is configured for this app"})
    assert recorder.jobs == []


def test_a_replayed_delivery_deploys_once(ctx: Context, door: int, queue: DeployQueue, recorder: Recorder) -> None:
    # a forger who knows a delivery id but not the secret cannot use it up
    assert post(door, payload(), delivery="d-7", secret="wrong secret, wrong secret")[0] == 401
    assert post(door, payload(), delivery="d-7")[0] == 202
    assert queue.idle(10)
    assert post(door, payload(), delivery="d-7") == (200, {"status": "duplicate delivery ignored",
                                                           "outcome": "deployed v9"})
    assert queue.idle(10)
    assert len(recorder.jobs) == 1
    assert [o[1] for o in outcomes(ctx)][1:] == ["deployed v9", "duplicate delivery ignored"]


def test_unsigned_floods_cannot_flush_the_dedupe_record(ctx: Context, door: int, queue: DeployQueue,
                                                        recorder: Recorder) -> None:
    assert post(door, payload(), delivery="d-8")[0] == 202
    assert queue.idle(10)
    for n in range(webhook_store.DELIVERY_LOG_SIZE + 20):
        assert post(door, payload(), delivery=f"flood-{n}", secret=None)[0] == 401
    assert post(door, payload(), delivery="d-8") == (200, {"status": "duplicate delivery ignored",
                                                           "outcome": "deployed v9"})
    # the delivery id is not signed: the same signed body under a new id is the same delivery
    assert post(door, payload(), delivery="d-8-again")[1]["status"] == "duplicate delivery ignored"
    assert queue.idle(10)
    assert len(recorder.jobs) == 1
    log = webhook_store.deliveries(ctx, APP)
    assert len(log) == webhook_store.DELIVERY_LOG_SIZE and log[0]["delivery"] == "d-8"  # refused entries leave first


def test_oversized_and_chunked_bodies(ctx: Context, door: int, recorder: Recorder) -> None:
    big = payload(commits=["x" * 1024] * 10 * 1024)  # about 10 MB
    assert post(door, big) == (413, {"error": "request body over 1048576 bytes"})
    conn = http.client.HTTPConnection("127.0.0.1", door, timeout=10)
    conn.request("POST", f"/webhooks/github/{APP}", body=iter([b"{}"]), encode_chunked=True,
                 headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())) == (411, {"error": "send the body with a Content-Length"})
    conn.close()
    assert recorder.jobs == []


def test_bursts_are_coalesced_to_the_newest(ctx: Context, door: int, queue: DeployQueue, recorder: Recorder) -> None:
    recorder.gate.clear()
    assert post(door, payload(after="1" * 40), delivery="first")[0] == 202
    assert recorder.started.wait(10)  # the first deploy is running; the next three wait
    for n in (2, 3, 4):
        assert post(door, payload(after=str(n) * 40), delivery=f"burst-{n}")[0] == 202
    recorder.gate.set()
    assert queue.idle(10)
    assert [j.delivery for j in recorder.jobs] == ["first", "burst-4"]
    assert [o[1] for o in outcomes(ctx)] == ["deployed v9", "superseded by burst-3", "superseded by burst-4",
                                             "deployed v9"]


def test_settings_commands_never_show_secrets(ctx: Context) -> None:
    ctx.state.create_app(APP)

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        return dispatch(list(argv), ctx, out, err), out.getvalue(), err.getvalue()

    assert run("webhooks:set", APP, "secret", "sup3r-s3cret-value") == (
        0, f"-----> Set webhook secret of {APP}: (hidden)\n", "")
    assert run("webhooks:set", APP, "token", "ghp_tokenvalue")[0] == 0
    assert run("webhooks:set", APP, "repo", "https://github.com/o/r.git")[0] == 0
    assert run("webhooks:set", APP, "secret", "short") == (
        2, "", "error: the secret must be at least 16 characters (try: openssl rand -hex 32)\n")
    assert run("webhooks:set", APP, "repo", "file:///etc")[0] == 2
    assert run("webhooks:set", APP, "repo", "https://user:pw@github.com/o/r.git")[0] == 2
    rc, out, _ = run("webhooks:report", APP, "--format", "json")
    assert rc == 0 and "sup3r" not in out and "ghp_" not in out
    assert json.loads(out) | {"deliveries": []} == {
        "url": f"/webhooks/github/{APP}", "repo": "https://github.com/o/r.git", "secret": "set", "token": "set",
        "api": "(from repo)",
        "deploy branch": "main", "deliveries": []}
    stored = ctx.state.path("keys", "webhooks", f"{APP}.json")
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    events = [e for e in ctx.state.read_events() if e["action"] == "webhooks:set"]
    assert "sup3r" not in json.dumps(events)
    assert run("webhooks:set", APP, "token", "")[1] == f"-----> Unset webhook token of {APP}\n"
    assert webhook_store.get_setting(ctx, APP, "token") is None


# -- the fetch from a local "GitHub" -------------------------------------------------------------------------
PRIVATE_TOKEN = "ghs_privaterepotoken"


def private(app: Any) -> Any:
    """GitHub's answer to a clone without the installation token: 401."""
    import base64

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        wanted = "Basic " + base64.b64encode(f"x-access-token:{PRIVATE_TOKEN}".encode()).decode()
        if environ.get("PATH_INFO", "").startswith("/private/") and environ.get("HTTP_AUTHORIZATION") != wanted:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="GitHub"')])
            return [b"token needed\n"]
        return app(environ, start_response)

    return wrapped


@pytest.fixture
def github(tmp_path: Path, git_repo) -> Iterator[tuple[str, Path]]:  # type: ignore[no-untyped-def]
    """A bare repository served over smart HTTP on 127.0.0.1 (also as a private one, under /private/), and a
    work tree that pushes to it."""
    bare = tmp_path / "github" / "hooked.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, env=git_repo.env)
    work = git_repo({"app.py": "print('hi')\n"})
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True, env=git_repo.env)
    repo = Repo(str(bare))
    backend = DictBackend({"/octo/hooked.git": repo, "/private/hooked.git": repo})
    server = make_server("127.0.0.1", 0, private(make_wsgi_chain(backend)),
                         handler_class=WSGIRequestHandlerLogger, server_class=WSGIServerLogger)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/octo/hooked.git", work
    server.shutdown()
    server.server_close()
    repo.close()


def test_fetch_brings_the_pushed_commit(ctx: Context, github: tuple[str, Path], git_repo) -> None:  # type: ignore[no-untyped-def]
    url, work = github
    ctx.state.create_app(APP)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True,
                         check=True).stdout.strip()
    job = Job(app=APP, delivery="d", ref="refs/heads/main", after=sha, repo=url)
    _fetch(ctx, job)
    repo = Repo(str(ctx.state.repo_path(APP)))
    assert sha.encode() in repo.object_store
    assert repo.get_refs() == {}  # objects only: the ref moves after the deploy
    repo.close()
    with pytest.raises(PushdockError, match=r"commit ccccccc is not on main at http://127\.0\.0\.1:\d+/octo/hooked"):
        _fetch(ctx, Job(app=APP, delivery="d", ref="refs/heads/main", after="c" * 40, repo=url))
    with pytest.raises(PushdockError, match=r"cannot fetch from http://127\.0\.0\.1:9/x\.git"):
        _fetch(ctx, Job(app=APP, delivery="d", ref="refs/heads/main", after="c" * 40, repo="http://127.0.0.1:9/x.git"))


def test_a_locked_app_is_not_deployed(ctx: Context, github: tuple[str, Path]) -> None:
    url, work = github
    ctx.state.create_app(APP)
    ctx.state.set("apps", APP, "locked", "1")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True,
                         check=True).stdout.strip()
    job = Job(app=APP, delivery="d-9", ref="refs/heads/main", after=sha, repo=url)
    webhook_store.append(ctx, APP, {"delivery": "d-9", "accepted": True, "status": 202, "outcome": "queued"})
    assert run_job(ctx, job) == f"failed: deploys of {APP} are locked (run apps:unlock {APP})"
    assert outcomes(ctx) == [(202, f"failed: deploys of {APP} are locked (run apps:unlock {APP})")]


def test_a_private_repository_is_fetched_with_the_token(ctx: Context, github: tuple[str, Path]) -> None:
    url, work = github
    url = url.replace("/octo/", "/private/")
    ctx.state.create_app(APP)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True,
                         check=True).stdout.strip()
    job = Job(app=APP, delivery="d", ref="refs/heads/main", after=sha, repo=url)
    with pytest.raises(PushdockError, match=r"cannot fetch from .*: HTTPUnauthorized"):
        _fetch(ctx, job)
    webhook_store.set_setting(ctx, APP, "token", PRIVATE_TOKEN)
    _fetch(ctx, job)
    repo = Repo(str(ctx.state.repo_path(APP)))
    assert sha.encode() in repo.object_store
    repo.close()
