"""A local stand-in for GitHub in preview tests: a bare repository served over smart HTTP by dulwich.web on
127.0.0.1, plus the commit-status API on the same port, and `pull_request` deliveries shaped like GitHub's,
signed with the app's webhook secret."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import WSGIRequestHandlerLogger, WSGIServerLogger, make_server, make_wsgi_chain

from tests.harness import Server, unique

OWNER = "octo/site"


class FakeGithub:
    """The repository over smart HTTP at /octo/site.git and `POST /api/repos/OWNER/NAME/statuses/SHA`."""

    def __init__(self, bare: Path) -> None:
        self.repo = Repo(str(bare))
        self.git = make_wsgi_chain(DictBackend({f"/{OWNER}.git": self.repo}))
        self.statuses: list[dict] = []  # type: ignore[type-arg]
        self.httpd = make_server("127.0.0.1", 0, self.app, handler_class=WSGIRequestHandlerLogger,
                                 server_class=WSGIServerLogger)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/{OWNER}.git"
        self.api = f"http://127.0.0.1:{self.port}/api"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def app(self, environ, start_response):  # type: ignore[no-untyped-def]
        path = environ["PATH_INFO"]
        if not path.startswith("/api/"):
            return self.git(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        self.statuses.append({"path": path, "auth": environ.get("HTTP_AUTHORIZATION"), **json.loads(body)})
        start_response("201 Created", [("Content-Type", "application/json")])
        return [b"{}"]

    def of(self, sha: str) -> list[tuple[str, str]]:
        return [(s["state"], s.get("target_url", "")) for s in self.statuses
                if s["path"] == f"/api/repos/{OWNER}/statuses/{sha}"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.repo.close()


@contextlib.contextmanager
def serving(server: Server) -> Iterator[FakeGithub]:
    """A fake GitHub with an empty `octo/site` (branch main) in the server's base dir, closed at the end."""
    bare = server.base / "github" / "site.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True, env=server.git_env)
    fake = FakeGithub(bare)
    try:
        yield fake
    finally:
        fake.close()


def deliver(server: Server, app: str, payload: dict, event: str = "pull_request", *,  # type: ignore[type-arg]
            secret: str | None) -> tuple[int, dict]:  # type: ignore[type-arg]
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4())}
    if secret is not None:
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request("POST", f"/webhooks/github/{app}", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def pr_payload(github: FakeGithub, action: str, number: int, sha: str, *, fork: bool = False) -> dict:  # type: ignore[type-arg]
    head_repo = "someone/site" if fork else OWNER
    return {"action": action, "number": number,
            "pull_request": {"number": number, "title": f"change {number}", "state": "open",
                             "head": {"sha": sha, "ref": f"pr{number}",
                                      "repo": {"full_name": head_repo, "fork": fork}},
                             "base": {"ref": "main", "repo": {"full_name": OWNER}}},
            "repository": {"full_name": OWNER, "clone_url": github.url, "default_branch": "main"},
            "sender": {"login": "someone" if fork else "octocat"}}


def parent_app(server: Server, github: FakeGithub, prefix: str, *config: str, secret: str, token: str
               ) -> tuple[str, Path]:
    """A deployed app whose pull requests get previews: pushed, its main branch on the fake GitHub, `config`
    (KEY=VALUE) set, the webhook pointed at the fake (`secret`, `token`), previews enabled; (app, work tree)."""
    app = unique(prefix)
    work = server.app_repo(app, body="parent")
    assert server.push(work, app).returncode == 0
    server.git("push", "-q", str(server.base / "github" / "site.git"), "main", cwd=work, check=True)
    server.cli("config:set", app, *config)
    for key, value in (("secret", secret), ("repo", github.url), ("token", token), ("api", github.api)):
        server.ssh("webhooks:set", app, key, value)
    server.ssh("previews:enable", app)
    return app, work


def open_pr(server: Server, work: Path, number: int, body: str) -> str:
    """Commit `body` on branch prN and publish it as refs/pull/N/head of the fake GitHub; the head."""
    server.git("checkout", "-q", "-B", f"pr{number}", "main", cwd=work, check=True)
    sha = server.commit(work, f"pr {number}", {"body.txt": body + "\n"})
    server.git("push", "-q", "-f", str(server.base / "github" / "site.git"), f"HEAD:refs/pull/{number}/head",
               cwd=work, check=True)
    server.git("checkout", "-q", "main", cwd=work, check=True)
    return sha


def listed(server: Server, app: str) -> dict[int, dict]:  # type: ignore[type-arg]
    return {row["pr"]: row for row in json.loads(server.cli("previews:list", app, "--format", "json").stdout)}


def wait_state(server: Server, app: str, pr: int, want: str, sha: str | None = None, timeout: float = 240) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    row: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        row = listed(server, app).get(pr, {})
        if row.get("state", "").startswith(want) and (sha is None or row.get("deployed") == sha):
            return row
        if row.get("state", "").startswith("failed"):
            break
        time.sleep(0.5)
    raise AssertionError(f"preview #{pr} not {want}: {row}")


def wait_gone(server: Server, app: str, pr: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pr not in listed(server, app):
            return
        time.sleep(0.5)
    raise AssertionError(f"preview #{pr} still listed: {listed(server, app)}")
