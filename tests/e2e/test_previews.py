"""Preview apps end to end: a local "GitHub" (a bare repository served over smart HTTP by dulwich.web on
127.0.0.1, plus the commit-status API on the same port) and `pull_request` payloads shaped like GitHub's,
signed with the app's secret, sent to a real `pushdock serve`, which fetches the PR head, builds with Docker
and serves it through nginx at APP-pr-N.localhost. Only GitHub is stood in for.

A pull request's head is pushed to the bare repository as refs/pull/N/head, as GitHub does for every PR (forks
included). Synchronize is a redeploy under load: 0 failed requests (so the module runs alone: zero_downtime).
What serve's timer does to previews (expiry, a dead worker's deploy resumed) waits for its minute ticks in
tests/e2e/test_previews_timer.py, beside the other tests."""

from __future__ import annotations

import json
import time
import uuid

import docker
import pytest

from tests.fakes.github import deliver as deliver_signed
from tests.fakes.github import listed, open_pr, parent_app, pr_payload, serving, wait_gone, wait_state
from tests.harness import Server

pytestmark = [pytest.mark.docker, pytest.mark.zero_downtime]  # counts failed requests under load: runs alone
SECRET = uuid.uuid4().hex
TOKEN = "ghp_" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("previews-e2e")).start()
    srv.add_key()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def github(server):
    with serving(server) as fake:
        yield fake


@pytest.fixture(scope="module")
def parent(server, github):
    """A deployed parent app with a secret and a plain variable, webhook and previews set; (app, work tree)."""
    app, work = parent_app(server, github, "site", "API_TOKEN=parent-only", "PLAIN=shared", "MAILER_PASSWORD=x",
                           secret=SECRET, token=TOKEN)
    server.ssh("previews:set", app, "env", "GREETING=preview")
    server.ssh("previews:set", app, "copy-secrets", "MAILER_PASSWORD")
    return app, work

def deliver(server: Server, app: str, payload: dict, *, secret: str | None = SECRET) -> tuple[int, dict]:  # type: ignore[type-arg]
    return deliver_signed(server, app, payload, secret=secret)


def containers(server: Server, app: str) -> list:  # type: ignore[type-arg]
    return docker.from_env().containers.list(all=True, filters={"label": [f"pushdock.app={app}",
                                                                          f"pushdock.data-dir={server.data}"]})


def releases(server: Server, app: str) -> list[str]:
    return sorted(p.name for p in (server.data / "data" / "releases" / app).glob("v*.json"))


def test_open_synchronize_close(server, github, parent) -> None:
    app, work = parent
    preview = f"{app}-pr-1"
    parent_releases, parent_env = releases(server, app), server.cli("config:export", app, "--format", "json").stdout

    first = open_pr(server, work, 1, "preview one")
    status, answer = deliver(server, app, pr_payload(github, "opened", 1, first))
    assert (status, answer["status"]) == (202, f"queued: {preview} at {first[:7]}")
    row = wait_state(server, app, 1, "deployed", first)
    assert row["url"] == f"http://{preview}.localhost:{server.proxy_port}" and row["fork"] is False
    assert server.get(preview) == (200, "preview one")
    # env: the parent's plain variables and copy-secrets, the overrides, none of its other secrets
    assert server.get(preview, "/env/PLAIN") == (200, "shared")
    assert server.get(preview, "/env/GREETING") == (200, "preview")
    assert server.get(preview, "/env/MAILER_PASSWORD") == (200, "x")
    assert server.get(preview, "/env/API_TOKEN") == (200, "")
    assert len(containers(server, preview)) == 1

    # synchronize: the new head replaces the old one with zero downtime
    second = open_pr(server, work, 1, "preview two")
    with server.load(preview) as load:
        assert deliver(server, app, pr_payload(github, "synchronize", 1, second))[0] == 202
        wait_state(server, app, 1, "deployed", second)
        time.sleep(1)
    print(f"\nsynchronize under load: {load.result.requests} requests, {load.result.failed} failed")
    assert load.result.failed == 0, load.result.errors
    assert set(load.result.bodies) <= {"preview one", "preview two"} and "preview two" in load.result.bodies
    assert server.get(preview) == (200, "preview two")

    # commit statuses: pending then success with the preview's URL, per head, with the token
    assert github.of(first) == [("pending", ""), ("success", row["url"])]
    assert github.of(second) == [("pending", ""), ("success", row["url"])]
    assert {s["auth"] for s in github.statuses} == {f"Bearer {TOKEN}"}

    # a head whose build fails: a failure status with the reason; the preview keeps serving the last good one
    server.git("checkout", "-q", "pr1", cwd=work, check=True)
    broken = server.commit(work, "broken", {"Dockerfile": "FROM pushdock/stack:bookworm\nRUN exit 3\n"})
    server.git("push", "-q", "-f", str(server.base / "github" / "site.git"), "HEAD:refs/pull/1/head", cwd=work,
               check=True)
    server.git("checkout", "-q", "main", cwd=work, check=True)
    assert deliver(server, app, pr_payload(github, "synchronize", 1, broken))[0] == 202
    failed = wait_state(server, app, 1, "failed: ")
    assert failed["deployed"] == second and server.get(preview) == (200, "preview two")
    deadline = time.monotonic() + 20  # the worker posts the status right after it records the state
    while len(github.of(broken)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    [(pending, _), (state, _)] = github.of(broken)
    assert (pending, state) == ("pending", "failure")
    assert github.statuses[-1]["description"] == failed["state"][:140]
    text = server.cli("previews:list", app).stdout.splitlines()
    assert text[0].split() == ["PR", "HEAD", "URL", "STATE", "AGE", "EXPIRES"]
    assert text[1].split()[:4] == ["1", broken[:7], row["url"], "failed:"]

    # closed: app, containers, services and routes gone
    status, answer = deliver(server, app, pr_payload(github, "closed", 1, broken))
    assert (status, answer["status"]) == (202, f"queued: close {preview}")
    wait_gone(server, app, 1)
    assert preview not in server.cli("apps:list").stdout.split()
    assert containers(server, preview) == []
    assert server.get(preview)[0] == 404

    # the parent never touched: same releases, same env, still serving
    assert releases(server, app) == parent_releases
    assert server.cli("config:export", app, "--format", "json").stdout == parent_env
    assert server.get(app) == (200, "parent")
    actions = [e["action"] for e in json.loads(server.cli("events", "--app", app, "--format", "json", "-n", "1000")
                                                .stdout) if e["action"].startswith("previews:")]
    assert actions.count("previews:deploy") == 3 and "previews:create" in actions and "previews:destroy" in actions


def test_a_fork_waits_for_approval_of_its_head(server, github, parent) -> None:
    app, work = parent
    preview = f"{app}-pr-2"
    head = open_pr(server, work, 2, "from a fork")
    status, answer = deliver(server, app, pr_payload(github, "opened", 2, head, fork=True))
    assert status == 202 and answer["status"].startswith("waiting: pull request #2 comes from a fork")
    assert listed(server, app)[2]["state"] == "waiting for approval"
    time.sleep(2)
    assert preview not in server.cli("apps:list").stdout.split()
    assert github.of(head) == [("pending", "")]

    out = server.ssh("previews:approve", app, "2")
    assert out.stderr == "" and f"Approved {head[:7]}" in out.stdout
    wait_state(server, app, 2, "deployed", head)
    assert server.get(preview) == (200, "from a fork")

    # a new commit needs a new approval: the approved one keeps serving
    newer = open_pr(server, work, 2, "from a fork, again")
    assert deliver(server, app, pr_payload(github, "synchronize", 2, newer, fork=True))[1]["status"].startswith(
        "waiting: ")
    assert listed(server, app)[2]["state"] == "waiting for approval"
    assert server.get(preview) == (200, "from a fork")
    bad = server.ssh("previews:approve", app, "9", check=False)
    assert bad.returncode != 0 and bad.stderr == f"error: {app} has no preview of pull request #9\n"


def test_bad_deliveries_are_refused_as_pushes_are(server, github, parent) -> None:
    app, work = parent
    head = open_pr(server, work, 3, "never deployed")
    payload = pr_payload(github, "opened", 3, head)
    assert deliver(server, app, payload, secret=None)[0] == 401
    assert deliver(server, app, payload, secret="not-the-secret-at-all")[0] == 401
    other = {**payload, "repository": {**payload["repository"], "clone_url": github.url.replace("octo", "evil")}}
    assert deliver(server, app, other)[0] == 403
    assert deliver(server, app, {**payload, "number": "3"}) == (
        400, {"error": "not a GitHub pull_request payload (action, number and pull_request.head.sha are needed)"})
    assert deliver(server, app, {**payload, "action": "labeled"}) == (202, {"status": "ignored: pull_request labeled"})
    assert 3 not in listed(server, app)
    assert f"{app}-pr-3" not in server.cli("apps:list").stdout.split()
