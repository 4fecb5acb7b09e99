"""GitHub webhooks end to end: a local "GitHub" (a bare repository served over smart HTTP by dulwich.web on
127.0.0.1) and push payloads shaped like GitHub's, signed with the app's secret, sent to a real
`pushdock serve`, which fetches, builds with Docker and serves through nginx. Only GitHub is stood in for.
Every delivery, whatever its answer, is an audit event in `events`; the secret and signatures are in no log."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import subprocess
import threading
import time
import uuid

import pytest
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_server, make_wsgi_chain

from tests.harness import Server, unique

pytestmark = pytest.mark.docker
SECRET = uuid.uuid4().hex
SIGNATURES: list[str] = []  # every signature sent: none may be logged


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("webhooks-e2e")).start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def github(server):
    """(clone URL, bare repo path) of `octo/site` on a local smart-HTTP server."""
    bare = server.base / "github" / "site.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, env=server.git_env)
    repo = Repo(str(bare))
    httpd = make_server("127.0.0.1", 0, make_wsgi_chain(DictBackend({"/octo/site.git": repo})),
                        handler_class=WSGIRequestHandlerLogger, server_class=WSGIServerLogger)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/octo/site.git", bare
    httpd.shutdown()
    httpd.server_close()
    repo.close()


def deliver(server: Server, app: str, payload: dict, event: str = "push", *,  # type: ignore[type-arg]
            delivery: str | None = None, secret: str | None = SECRET) -> tuple[int, dict, float]:  # type: ignore[type-arg]
    """POST one delivery; `secret=None` sends it unsigned."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
               "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "User-Agent": "GitHub-Hookshot/e2e"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        SIGNATURES.append(headers["X-Hub-Signature-256"])
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    started = time.monotonic()
    try:
        conn.request("POST", f"/webhooks/github/{app}", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()), time.monotonic() - started
    finally:
        conn.close()


def push_payload(url: str, before: str, after: str) -> dict:  # type: ignore[type-arg]
    return {"ref": "refs/heads/main", "before": before, "after": after, "created": before == "0" * 40,
            "deleted": False, "forced": False, "base_ref": None, "compare": f"{url}/compare",
            "commits": [{"id": after, "message": "change", "author": {"name": "Octo Cat"}}],
            "head_commit": {"id": after}, "pusher": {"name": "octocat", "email": "octocat@github.com"},
            "repository": {"id": 1, "name": "site", "full_name": "octo/site", "private": False,
                           "clone_url": url, "default_branch": "main"},
            "sender": {"login": "octocat"}}


def audit(server: Server, app: str, action: str = "webhook") -> list[dict]:  # type: ignore[type-arg]
    out = server.cli("events", "--app", app, "--format", "json", "-n", "10000").stdout
    return [e for e in json.loads(out) if e["action"] == action]


def assert_nothing_secret_logged(server: Server) -> None:
    logs = [server.data / "events.log", server.base / "serve.log", *(server.data / "logs").rglob("*.log")]
    for log in logs:
        text = log.read_text(errors="replace")
        assert SECRET not in text, log
        assert not [s for s in SIGNATURES if s in text or s.removeprefix("sha256=") in text], log


def wait_outcome(server: Server, app: str, sha: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliveries = json.loads(server.cli("webhooks:report", app, "--format", "json").stdout)["deliveries"]
        outcome = next((d["outcome"] for d in reversed(deliveries) if d.get("sha") == sha and d["status"] == 202), "")
        if outcome.startswith(("deployed", "failed", "already")):
            return outcome
        time.sleep(0.5)
    raise AssertionError(f"no outcome for {sha}: {deliveries}")


def test_a_signed_push_is_fetched_and_deployed(server, github) -> None:
    url, bare = github
    app = unique("hooked")
    server.cli("apps:create", app)
    server.ssh("webhooks:set", app, "secret", SECRET)
    server.ssh("webhooks:set", app, "repo", url)
    assert deliver(server, app, {"zen": "Design for failure.", "hook_id": 7}, event="ping")[:2] == (
        200, {"status": "pong"})

    work = server.app_repo(app, body="deployed by a webhook")
    server.git("push", "-q", str(bare), "main", cwd=work, check=True)
    sha = server.git("rev-parse", "HEAD", cwd=work, check=True).stdout.strip()
    status, answer, took = deliver(server, app, push_payload(url, "0" * 40, sha))
    assert (status, answer["status"], answer["sha"]) == (202, "queued", sha)
    assert took < 2  # answered at once; the deploy runs after
    assert wait_outcome(server, app, sha) == "deployed v1"
    assert server.get(app) == (200, "deployed by a webhook")
    assert server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work).stdout.split()[0] == sha
    assert server.cli("git:report", app, "--format", "json").stdout.count('"deploy branch": "main"') == 1

    # a commit whose build fails: reported, and the previous release keeps serving
    broken = server.commit(work, "broken", {"Dockerfile": "FROM pushdock/stack:bookworm\nRUN exit 3\n"})
    server.git("push", "-q", str(bare), "main", cwd=work, check=True)
    assert deliver(server, app, push_payload(url, sha, broken))[0] == 202
    assert wait_outcome(server, app, broken).startswith("failed: ")
    assert server.get(app) == (200, "deployed by a webhook")
    assert server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work).stdout.split()[0] == sha
    report = server.ssh("webhooks:report", app).stdout
    assert SECRET not in report
    assert "deployed v1" in report and "failed: " in report

    # the audit log: each delivery when it came, each deploy when it ended, as the webhook on the HTTP door
    received = {(e["event"], e["result"], e["status"], e.get("sha")) for e in audit(server, app)}
    assert received == {("ping", "ok", 200, None), ("push", "queued", 202, sha), ("push", "queued", 202, broken)}
    deploys = [(e["sha"], e["result"], e["outcome"].split(":")[0]) for e in audit(server, app, "webhook:deploy")]
    assert deploys == [(sha, "ok", "deployed v1"), (broken, "failed", "failed")]
    for e in audit(server, app) + audit(server, app, "webhook:deploy"):
        assert (e["who"], e["door"]) == ("github-webhook", "http") and e["duration"] >= 0
    assert [e["who"] for e in audit(server, app, "deploy")] == ["github-webhook"] * 2
    assert_nothing_secret_logged(server)


def test_every_delivery_is_an_audit_event(server, github) -> None:
    url, _ = github
    app = unique("audited")
    server.cli("apps:create", app)
    unconfigured = deliver(server, app, {"zen": "x"}, event="ping", delivery="d-unconfigured")
    server.ssh("webhooks:set", app, "secret", SECRET)
    server.ssh("webhooks:set", app, "repo", url)
    sha = "1" * 40
    answers = {
        "d-unsigned": deliver(server, app, push_payload(url, "0" * 40, sha), delivery="d-unsigned", secret=None),
        "d-forged": deliver(server, app, push_payload(url, "0" * 40, sha), delivery="d-forged",
                            secret="not the secret, not at all"),
        "d-ping": deliver(server, app, {"zen": "Speak like a human."}, event="ping", delivery="d-ping"),
        "d-branch": deliver(server, app, {**push_payload(url, "0" * 40, sha), "ref": "refs/heads/feature"},
                            delivery="d-branch"),
        "d-repo": deliver(server, app, push_payload(url.replace("octo", "evil"), "0" * 40, sha), delivery="d-repo"),
        "d-issue": deliver(server, app, {"action": "opened"}, event="issues", delivery="d-issue"),
    }
    replay = deliver(server, app, {"zen": "Speak like a human."}, event="ping", delivery="d-ping")
    assert unconfigured[0] == 404 and replay[:2] == (200, {"status": "duplicate delivery ignored",
                                                           "outcome": "pong"})
    assert {d: a[0] for d, a in answers.items()} == {"d-unsigned": 401, "d-forged": 401, "d-ping": 200,
                                                     "d-branch": 202, "d-repo": 403, "d-issue": 202}
    events = audit(server, app)
    assert [(e["delivery"], e["status"], e["result"]) for e in events] == [
        ("d-unconfigured", 404, "refused"), ("d-unsigned", 401, "denied"), ("d-forged", 401, "denied"),
        ("d-ping", 200, "ok"), ("d-branch", 202, "ignored"), ("d-repo", 403, "refused"),
        ("d-issue", 202, "ignored"), ("d-ping", 200, "duplicate")]
    assert events[1]["outcome"].startswith("missing X-Hub-Signature-256")
    assert events[4]["outcome"] == "ignored: refs/heads/feature is not the deploy branch (main)"
    for e in events:
        assert (e["who"], e["door"], e["app"]) == ("github-webhook", "http", app) and e["duration"] >= 0
        assert set(e) <= {"time", "who", "door", "app", "action", "result", "duration", "delivery", "event",
                          "status", "outcome", "ref", "sha", "when"}
    assert audit(server, app, "webhook:deploy") == []  # nothing was queued
    table = server.cli("events", "--app", app).stdout
    assert "webhook" in table and "denied" in table and "duplicate" in table
    assert_nothing_secret_logged(server)


def test_a_replayed_old_delivery_never_rolls_the_app_back(server, github) -> None:
    """Anyone may capture a signed delivery and send it again, under its id or a new one (the id header is
    not signed), after flooding the delivery log with unsigned ones: the app and its branch stay put."""
    url, bare = github
    app = unique("replayed")
    server.cli("apps:create", app)
    server.ssh("webhooks:set", app, "secret", SECRET)
    server.ssh("webhooks:set", app, "repo", url)
    work = server.app_repo(app, body="old")
    server.git("push", "-q", "--force", str(bare), "main", cwd=work, check=True)
    old = server.git("rev-parse", "HEAD", cwd=work, check=True).stdout.strip()
    captured = push_payload(url, "0" * 40, old)
    assert deliver(server, app, captured, delivery="d-old")[0] == 202
    assert wait_outcome(server, app, old) == "deployed v1"
    new = server.commit(work, "new", {"body.txt": "new\n"})
    server.git("push", "-q", str(bare), "main", cwd=work, check=True)
    assert deliver(server, app, push_payload(url, old, new), delivery="d-new")[0] == 202
    assert wait_outcome(server, app, new) == "deployed v2"

    for n in range(120):  # more than the delivery log keeps
        assert deliver(server, app, {"zen": str(n)}, event="ping", delivery=f"flood-{n}", secret=None)[0] == 401
    assert deliver(server, app, captured, delivery="d-old")[:2] == (
        200, {"status": "duplicate delivery ignored", "outcome": "deployed v1"})
    assert deliver(server, app, captured, delivery="d-old-again")[1]["status"] == "duplicate delivery ignored"
    # the same old commit in a delivery never seen (a dedupe record expired, GitHub retrying an old push)
    status, answer, _ = deliver(server, app, {**captured, "before": "f" * 40}, delivery="d-old-later")
    reason = f"ignored: {old[:7]} is an ancestor of the deployed commit ({new[:7]})"
    assert (status, answer["status"].split(";")[0]) == (202, reason)
    report = server.ssh("webhooks:report", app).stdout
    assert reason in report and "a webhook never rolls back" in report
    assert [e["result"] for e in audit(server, app)][-3:] == ["duplicate", "duplicate", "ignored"]
    time.sleep(1)  # nothing was queued: nothing may change
    assert server.get(app) == (200, "new")
    assert server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work).stdout.split()[0] == new
    releases = json.loads(server.cli("releases", app, "--format", "json").stdout)
    assert len(releases) == 2
    assert_nothing_secret_logged(server)
