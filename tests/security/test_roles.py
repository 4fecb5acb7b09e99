"""Claim: roles hold on every door. An admin runs everything; a deployer pushes to and runs app commands on
its listed apps only; admin-only commands refuse deployers. Doors: the SSH command door, git over SSH
(receive and upload), and the host CLI (root is admin). Pushes use `-o skip-deploy` (stored, not deployed),
so this needs the real server but no container builds."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.harness import Server, unique


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("roles")
    srv = Server(base).start()
    srv.add_key("root-admin")
    srv.mine, srv.theirs = unique("mine"), unique("theirs")
    for app in (srv.mine, srv.theirs):
        srv.cli("apps:create", app)
    srv.deployer_key = base / "deployer"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(srv.deployer_key)], check=True)
    srv.add_key("ci", role="deployer", apps=srv.mine, key=srv.deployer_key)
    yield srv
    srv.stop()


APP_READ = [["config:show", "{app}"], ["apps:report", "{app}"], ["ps:report", "{app}"]]
APP_WRITE = [["config:set", "--no-restart", "{app}", "SECRET=s3cr3t-value"], ["apps:lock", "{app}"],
             ["apps:unlock", "{app}"]]
ADMIN_ONLY = [["ssh-keys:list"], ["apps:create", "{new}"], ["apps:destroy", "{app}", "--force"],
              ["apps:rename", "{app}", "{new}"]]


def fill(argv: list[str], app: str) -> list[str]:
    return [a.format(app=app, new=unique("new")) for a in argv]


@pytest.mark.parametrize("argv", APP_READ + APP_WRITE)
def test_deployer_may_use_its_app(server, argv) -> None:
    res = server.ssh(*fill(argv, server.mine), key=server.deployer_key, check=False)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("argv", APP_READ + APP_WRITE)
def test_deployer_may_not_touch_other_apps(server, argv) -> None:
    before = server.cli("config:export", server.theirs, "--format", "json").stdout
    res = server.ssh(*fill(argv, server.theirs), key=server.deployer_key, check=False)
    assert res.returncode == 13 and res.stderr.startswith("error: ") and "no access" in res.stderr
    assert res.stderr.count("\n") == 1
    assert server.cli("config:export", server.theirs, "--format", "json").stdout == before


@pytest.mark.parametrize("argv", ADMIN_ONLY)
def test_admin_only_commands_refuse_deployers(server, argv) -> None:
    res = server.ssh(*fill(argv, server.mine), key=server.deployer_key, check=False)
    assert res.returncode == 13 and "admin only" in res.stderr, res.stderr
    assert server.mine in server.cli("apps:list").stdout


def test_admin_may_do_everything_on_both_doors(server) -> None:
    temp = unique("tmp")
    server.ssh("apps:create", temp)
    assert "ci" in server.ssh("ssh-keys:list").stdout
    server.cli("config:set", "--no-restart", temp, "A=1")
    server.ssh("apps:destroy", temp, "--force")
    assert temp not in server.cli("apps:list").stdout


def test_git_doors_follow_the_same_rules(server, tmp_path) -> None:
    work = server.app_repo(unique("w"))
    ok = server.git("push", "-o", "skip-deploy", server.remote(server.mine), "main", cwd=work)
    deployer_env = {**server.git_env, "GIT_SSH_COMMAND": " ".join(server.ssh_argv(server.deployer_key))}
    denied = subprocess.run(["git", "push", "-o", "skip-deploy", server.remote(server.theirs), "main"], cwd=work,
                            env=deployer_env, capture_output=True, text=True)
    assert denied.returncode != 0 and "no access" in denied.stderr, denied.stderr
    mine = subprocess.run(["git", "push", "-o", "skip-deploy", server.remote(server.mine), "HEAD:refs/heads/dep"],
                          cwd=work, env=deployer_env, capture_output=True, text=True)
    assert ok.returncode == 0 and mine.returncode == 0, (ok.stderr, mine.stderr)
    clone = subprocess.run(["git", "clone", "-q", server.remote(server.theirs), str(tmp_path / "c")],
                           env=deployer_env, capture_output=True, text=True)
    assert clone.returncode != 0 and "no access" in clone.stderr
    new_app = unique("byci")
    created = subprocess.run(["git", "push", "-o", "skip-deploy", server.remote(new_app), "main"], cwd=work,
                             env=deployer_env, capture_output=True, text=True)
    assert created.returncode != 0 and new_app not in server.cli("apps:list").stdout


def test_secrets_never_echoed_or_logged(server) -> None:
    server.ssh("config:set", "--no-restart", server.mine, "TOKEN=very-secret-123")
    events = server.cli("events", "--format", "json", "-n", "1000").stdout
    assert "very-secret-123" not in events and json.loads(events)
    for log in (server.data / "logs").rglob("*.log"):
        assert "very-secret-123" not in log.read_text(errors="replace"), log
    assert "very-secret-123" not in (server.base / "serve.log").read_text()
