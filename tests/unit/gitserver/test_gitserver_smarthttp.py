"""Git over HTTP with tokens: the real git client against the HTTP door (no docker: nothing deploys here)."""

from __future__ import annotations

import http.client
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dulwich.repo import Repo

from gitserver.smarthttp import presented_token
from pushdock import tokens
from pushdock.context import Context
from pushdock.errors import Conflict, Forbidden, NotFound, UsageError
from pushdock.state import Identity
from web.door import HttpDoor


@pytest.fixture
def door(ctx: Context) -> Iterator[str]:
    d = HttpDoor(ctx)
    d.start()
    yield f"127.0.0.1:{d.address[1]}"
    d.stop()


@pytest.fixture
def work(git_repo) -> Path:  # type: ignore[no-untyped-def]
    return git_repo({"Procfile": "web: python -m http.server $PORT\n"})


def url(door: str, token: str, app: str) -> str:
    return f"http://user:{token}@{door}/git/{app}.git"


def test_tokens_are_shown_once_and_stored_hashed(ctx: Context) -> None:
    record, secret = tokens.add_token(ctx, "ci", role="deployer", apps=("web",))
    assert secret.startswith("pdt_") and len(secret) > 40
    stored = ctx.state.path("keys", "http-tokens.json")
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert secret not in stored.read_text()
    assert json.loads(stored.read_text())[0]["digest"] == record.digest
    assert tokens.identity_for_token(ctx, secret) == Identity(name="ci", role="deployer", apps=("web",), door="http")
    assert tokens.identity_for_token(ctx, secret + "x") is None
    assert [t.name for t in tokens.list_tokens(ctx)] == ["ci"]
    with pytest.raises(Conflict):
        tokens.add_token(ctx, "ci")
    with pytest.raises(UsageError, match="--apps is for deployers"):
        tokens.add_token(ctx, "x", role="admin", apps=("web",))
    with pytest.raises(UsageError, match="invalid token name"):
        tokens.add_token(ctx, "a b")
    deployer = Context(settings=ctx.settings, identity=Identity(name="d", role="deployer", apps=("web",)))
    with pytest.raises(Forbidden):
        tokens.add_token(deployer, "y")
    tokens.remove_token(ctx, "ci")
    assert tokens.identity_for_token(ctx, secret) is None
    with pytest.raises(NotFound):
        tokens.remove_token(ctx, "ci")


@pytest.mark.parametrize(("header", "token"), [
    ("Basic dXNlcjpzM2NyZXQ=", "s3cret"),  # user:s3cret
    ("Basic czNjcmV0", "s3cret"),  # the token as the user name
    ("Basic !!!", None), ("Bearer x", None), (None, None),
])
def test_presented_token(header: str | None, token: str | None) -> None:
    assert presented_token(header) == token


def test_clone_and_push_with_a_token(ctx: Context, door: str, work: Path, git: Any, tmp_path: Path) -> None:
    _, secret = tokens.add_token(ctx, "laptop")
    cp = git("push", "-o", "skip-deploy", url(door, secret, "webapp"), "main", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert "remote: -----> main stored, deploy skipped (-o skip-deploy)" in cp.stderr
    assert ctx.state.app_exists("webapp")  # the first push created it
    cp = git("clone", "-q", url(door, secret, "webapp"), str(tmp_path / "clone"))
    assert cp.returncode == 0, cp.stderr
    assert (tmp_path / "clone" / "Procfile").exists()
    cp = git("fetch", url(door, secret, "webapp"), "refs/meta/config", cwd=tmp_path / "clone")
    assert cp.returncode == 0, cp.stderr
    events = [e for e in ctx.state.read_events() if e["action"] == "git:push"]
    assert (events[-1]["who"], events[-1]["door"]) == ("laptop", "http")


def test_a_deployer_token_reaches_its_apps_only(ctx: Context, door: str, work: Path, git: Any) -> None:
    _, secret = tokens.add_token(ctx, "ci", role="deployer", apps=("mine",))
    assert git("push", "-o", "skip-deploy", url(door, secret, "mine"), "main", cwd=work).returncode == 0
    cp = git("push", "-o", "skip-deploy", url(door, secret, "theirs"), "main", cwd=work)
    assert cp.returncode != 0
    assert "403" in cp.stderr
    assert not ctx.state.app_exists("theirs")


def test_wrong_or_missing_token_is_401(ctx: Context, door: str, work: Path, git: Any) -> None:
    tokens.add_token(ctx, "laptop")
    cp = git("push", url(door, "pdt_wrong", "webapp"), "main", cwd=work)
    assert cp.returncode != 0
    assert "remote: unknown token" in cp.stderr and "Authentication failed" in cp.stderr
    cp = git("ls-remote", f"http://{door}/git/webapp.git", cwd=work)
    assert cp.returncode != 0
    assert not ctx.state.app_exists("webapp")


def request(door: str, method: str, path: str, token: str | None = None, **headers: str) -> tuple[int, str, dict]:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection(door, timeout=10)
    if token:
        import base64

        headers["Authorization"] = "Basic " + base64.b64encode(f"x:{token}".encode()).decode()
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), resp.headers  # type: ignore[return-value]  # (names are case-insensitive)
    finally:
        conn.close()


def test_only_the_smart_endpoints_are_served(ctx: Context, door: str) -> None:
    _, secret = tokens.add_token(ctx, "laptop")
    ctx.state.create_app("webapp")
    status, _, headers = request(door, "GET", "/git/webapp.git/info/refs?service=git-upload-pack")
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="pushdock"'
    assert request(door, "GET", "/git/webapp.git/info/refs?service=git-upload-pack", secret)[0] == 200
    assert request(door, "GET", "/git/webapp.git/info/refs", secret)[0] == 403  # dumb HTTP
    assert request(door, "GET", "/git/webapp.git/HEAD", secret)[0] == 404
    assert request(door, "GET", "/git/webapp.git/objects/info/packs", secret)[0] == 404
    assert request(door, "GET", "/git/webapp.git/git-upload-pack", secret)[0] == 405
    assert request(door, "GET", "/git/nosuch.git/info/refs?service=git-upload-pack", secret)[:2] == (
        404, "app nosuch does not exist\n")
    assert request(door, "POST", "/git/webapp.git/git-receive-pack", secret,
                   **{"Content-Type": "text/plain"})[0] == 403
    repo = Repo(str(ctx.state.repo_path("webapp")))
    assert repo.get_refs() == {}  # nothing was written
    repo.close()


def test_progress_streams_while_the_push_runs(ctx: Context, door: str, work: Path, git: Any) -> None:
    """The `remote:` line about the held lock reaches the client while the push is still waiting."""
    from tests.unit.gitserver.test_gitserver_receive import _wait_for

    _, secret = tokens.add_token(ctx, "laptop")
    ctx.state.create_app("webapp")
    ctx.state.set("git", "webapp", "deploy-branch", "main")  # feature is stored, not deployed
    with ctx.state.app_lock("webapp"):
        push = git.popen("push", url(door, secret, "webapp"), "main:feature", cwd=work)
        _wait_for(push.stderr, "waiting for another deploy of webapp to finish...")
        assert push.poll() is None
    _, err = push.communicate(timeout=30)
    assert push.returncode == 0, err
    assert "* [new branch]      main -> feature" in err
