"""Commit statuses (gitserver/github.py) to a local stand-in for GitHub's API on 127.0.0.1: where they go, what
they carry, and that nothing is posted without a token; a dead API is logged, never raised."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gitserver import github, webhook_store
from pushdock.context import Context
from pushdock.errors import UsageError

APP = "site"
SHA = "a" * 40


class Api(ThreadingHTTPServer):
    received: list[dict[str, Any]]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append({"path": self.path, "auth": self.headers["Authorization"], **body})  # type: ignore[attr-defined]
        self.send_response(201)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api(("127.0.0.1", 0), Handler)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_api_base_follows_the_repository(ctx: Context) -> None:
    ctx.state.create_app(APP)
    assert github.api_base(ctx, APP) is None
    webhook_store.set_setting(ctx, APP, "repo", "https://github.com/octo/site.git")
    assert github.api_base(ctx, APP) == "https://api.github.com"
    webhook_store.set_setting(ctx, APP, "repo", "https://git.example.com/octo/site.git")
    assert github.api_base(ctx, APP) == "https://git.example.com/api/v3"
    webhook_store.set_setting(ctx, APP, "api", "http://127.0.0.1:9/api/")
    assert github.api_base(ctx, APP) == "http://127.0.0.1:9/api"
    assert github.owner_and_name("https://git.example.com/octo/site.git") == "octo/site"


def test_a_status_is_posted_with_the_token_only_when_there_is_one(ctx: Context, api: Api) -> None:
    ctx.state.create_app(APP)
    webhook_store.set_setting(ctx, APP, "repo", "https://github.com/octo/site.git")
    webhook_store.set_setting(ctx, APP, "api", f"http://127.0.0.1:{api.server_address[1]}/api")
    ctx.bus.call("commit_status", ctx=ctx, app=APP, sha=SHA, state="pending", description="d", target_url="")
    assert api.received == []  # no token: nothing posted
    webhook_store.set_setting(ctx, APP, "token", "ghp_secret_token")
    ctx.bus.call("commit_status", ctx=ctx, app=APP, sha=SHA, state="success", description="x" * 200,
                 target_url="http://site-pr-1.localhost")
    assert api.received == [{"path": f"/api/repos/octo/site/statuses/{SHA}", "auth": "Bearer ghp_secret_token",
                             "state": "success", "description": "x" * 140, "context": "pushdock/preview",
                             "target_url": "http://site-pr-1.localhost"}]
    assert not github.post_status(ctx, APP, SHA, state="bogus", description="", target_url="")


def test_an_unreachable_api_is_logged_not_raised(ctx: Context) -> None:
    ctx.state.create_app(APP)
    webhook_store.set_setting(ctx, APP, "repo", "https://github.com/octo/site.git")
    webhook_store.set_setting(ctx, APP, "token", "ghp_secret_token")
    webhook_store.set_setting(ctx, APP, "api", "http://127.0.0.1:9/api")  # discard port: refused
    assert not github.post_status(ctx, APP, SHA, state="failure", description="d", target_url="")
    with pytest.raises(UsageError, match="api must be"):
        webhook_store.set_setting(ctx, APP, "api", "file:///etc/passwd")
