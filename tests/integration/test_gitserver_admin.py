"""Git as the admin interface against a real `pushdock serve`, with the real git, ssh and HTTP clients.

No docker: the apps here are never deployed (config pushes store; code pushes use other branches or
`-o skip-deploy`). tests/e2e/test_git_admin.py and test_webhooks.py cover the deploys.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Server, started, unique


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with started(tmp_path_factory.mktemp("gitadmin"), "alice") as srv:
        yield srv


def config_checkout(server: Server, app: str) -> Path:
    work = server.base / f"config-{app}"
    server.git("init", "-q", str(work), cwd=server.base, check=True)
    server.git("fetch", "-q", server.remote(app), "refs/meta/config", cwd=work, check=True)
    server.git("checkout", "-q", "FETCH_HEAD", cwd=work, check=True)
    return work


def test_every_setting_change_is_in_the_config_history(server: Server) -> None:
    app = unique("hist")
    server.ssh("apps:create", app)
    server.ssh("config:set", app, "DATABASE_URL=postgres://u:pw@db/x", "DEBUG=1")
    server.cli("config:unset", app, "DEBUG")
    work = server.base / f"log-{app}"
    server.git("init", "-q", str(work), cwd=server.base, check=True)
    server.git("remote", "add", "pushdock", server.remote(app), cwd=work, check=True)
    server.git("fetch", "-q", "pushdock", "refs/meta/config", cwd=work, check=True)
    log = server.git("log", "-p", "--format=%an: %s", "FETCH_HEAD", cwd=work, check=True).stdout
    subjects = [line for line in log.splitlines() if ": " in line and not line.startswith(("+", "-", " "))]
    assert subjects[:3] == ["root: config:unset DEBUG", "alice: config:set DATABASE_URL DEBUG",
                            f"alice: apps:create {app}"]
    assert "+DATABASE_URL=postgres://u:pw@db/x" in log  # values live in the env file, never in messages
    assert "-DEBUG=1" in log


def test_config_push_over_ssh_valid_then_invalid(server: Server) -> None:
    app = unique("cfg")
    server.ssh("apps:create", app)
    work = config_checkout(server, app)
    (work / "env").write_text("GREETING=hello\n")
    server.commit(work, "greeting")
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert "remote: -----> Applying refs/meta/config" in cp.stderr
    assert server.ssh("config:get", app, "GREETING").stdout == "hello\n"
    (work / "pushdock.toml").write_text("[checks]\nwait_to_retire = 'soon'\n")
    server.commit(work, "bad type")
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert cp.returncode != 0
    assert ("! [remote rejected] HEAD -> refs/meta/config (pushdock.toml: checks.wait_to_retire: "
            "Input should be a valid integer)") in cp.stderr
    (work / "pushdock.toml").write_text("[checks\n")
    server.commit(work, "syntax error")
    cp = server.git("push", server.remote(app), "HEAD:refs/meta/config", cwd=work)
    assert "(pushdock.toml: Expected ']' at the end of a table declaration (at line 1, column 8))" in cp.stderr
    assert server.cli("config:get", app, "GREETING").stdout == "hello\n"


def test_skip_deploy_and_unknown_option(server: Server) -> None:
    app = unique("opt")
    work = server.app_repo(app)
    cp = server.push(work, app, "main", "-o", "skip-deploy")
    assert cp.returncode == 0, cp.stderr
    assert "remote: -----> main stored, deploy skipped (-o skip-deploy)" in cp.stderr
    first = server.git("rev-parse", "HEAD", cwd=work, check=True).stdout.strip()
    server.commit(work, "more")
    cp = server.push(work, app, "main", "-o", "fast")
    assert "! [remote rejected] main -> main (unknown push option 'fast')" in cp.stderr
    remote = server.git("ls-remote", server.remote(app), "refs/heads/main", cwd=work, check=True).stdout
    assert remote.split()[0] == first
    assert server.cli("apps:report", app, "--format", "json").stdout.count('"deployed": false') == 1


def signed_post(server: Server, app: str, body: bytes, secret: str, **headers: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    try:
        conn.request("POST", f"/webhooks/github/{app}", body=body, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sig, **headers})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_webhook_bad_inputs_against_serve(server: Server) -> None:
    app = unique("hook")
    server.cli("apps:create", app)
    secret = uuid.uuid4().hex
    server.ssh("webhooks:set", app, "secret", secret)
    server.ssh("webhooks:set", app, "repo", "https://github.com/octo/real.git")
    push = {"ref": "refs/heads/main", "after": "a" * 40, "repository": {"clone_url": "https://github.com/octo/fork.git"}}
    body = json.dumps(push).encode()
    assert signed_post(server, app, body, secret)[0] == 403
    assert signed_post(server, app, body, "not the secret")[0] == 401
    assert signed_post(server, app, body, secret, **{"Content-Type": "text/plain"})[0] == 415
    assert signed_post(server, app, b" " * (10 * 1024 * 1024), secret)[0] == 413
    assert signed_post(server, app, json.dumps({"zen": "z"}).encode(), secret, **{"X-GitHub-Event": "ping"}) == (
        200, {"status": "pong"})
    report = server.ssh("webhooks:report", app).stdout
    assert secret not in report
    assert "403     the payload names another repository" in report
    assert "401     bad signature" in report
    assert "415     content type must be application/json" in report
    assert "200     pong" in report


def test_clone_and_push_over_http_with_a_token(server: Server) -> None:
    app = unique("web")
    token = server.ssh("tokens:add", "ci", "--role", "deployer", "--apps", app).stdout.splitlines()[-1]
    assert token.startswith("pdt_")
    assert token not in server.ssh("tokens:list").stdout
    work = server.app_repo(app)
    url = f"http://ci:{token}@127.0.0.1:{server.http_port}/git/{app}.git"
    cp = server.git("push", "-o", "skip-deploy", url, "main", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert "remote: -----> main stored, deploy skipped (-o skip-deploy)" in cp.stderr
    clone = server.base / f"clone-{app}"
    server.git("clone", "-q", url, str(clone), cwd=server.base, check=True)
    assert (clone / "body.txt").exists()
    cp = server.git("clone", "-q", url.replace(token, token[:-1] + "x"), str(server.base / "nope"), cwd=server.base)
    assert cp.returncode != 0 and "Authentication failed" in cp.stderr
    server.ssh("tokens:remove", "ci")
    cp = server.git("ls-remote", url, cwd=server.base)
    assert cp.returncode != 0


def test_service_commands_are_host_only(server: Server) -> None:
    """An admin key over SSH may not write a systemd unit or remove one, as it may not run `serve`."""
    for verb in ("install", "uninstall"):
        target = server.base / f"units-{verb}"
        res = server.ssh(f"service:{verb}", "--unit-dir", str(target), "--env-file", str(target / "e.env"),
                         check=False)
        assert (res.returncode, res.stderr) == (13, f"error: service:{verb} runs on the host only\n")
        assert not target.exists()
    res = server.ssh("serve", check=False)
    assert (res.returncode, res.stderr) == (13, "error: serve runs on the host only\n")
