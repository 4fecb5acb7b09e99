"""`pushdock serve` as a real process, driven by the real ssh and git clients (no docker: nothing deploys).

Pushes here go to branches that are not the deploy branch, or use `-o skip-deploy`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushdock.state import State
from tests.harness import Server, http_get, started, unique


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with started(tmp_path_factory.mktemp("gitssh")) as srv:
        yield srv


def first_push(server: Server, app: str) -> Path:
    """Create `app` by a first push of main without deploying; later pushes to other branches are stored."""
    work = server.app_repo(app)
    cp = server.push(work, app, "main", "-o", "skip-deploy")
    assert cp.returncode == 0, cp.stderr
    assert "main stored, deploy skipped (-o skip-deploy)" in cp.stderr
    State(server.data).set("git", app, "deploy-branch", "main")
    return work


def fsck(server: Server, app: str) -> None:
    cp = server.git("--git-dir", str(server.data / "repos" / f"{app}.git"), "fsck", "--strict", cwd=server.base)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def refs(server: Server, app: str) -> dict[str, str]:
    out = server.git("ls-remote", server.remote(app), cwd=server.base, check=True).stdout
    return {ref: sha for sha, ref in (line.split("\t") for line in out.splitlines())}


def test_push_stores_a_branch_and_clone_gets_it_back(server: Server) -> None:
    app = unique("gs")
    work = first_push(server, app)
    sha = server.commit(work, "feature work", {"feature.txt": "new\n"})
    cp = server.push(work, app, "main:feature")
    assert cp.returncode == 0, cp.stderr
    assert "remote: branch feature stored, not deployed (the deploy branch is main)" in cp.stderr
    assert "* [new branch]      main -> feature" in cp.stderr
    assert refs(server, app)["refs/heads/feature"] == sha
    fsck(server, app)
    clone = server.base / f"clone-{app}"
    server.git("clone", "-q", "-b", "feature", server.remote(app) + ".git", str(clone), cwd=server.base, check=True)
    assert (clone / "feature.txt").read_text() == "new\n"
    assert not list((server.data / "repos" / f"{app}.git" / "objects").glob("tmp_pack_*"))


def test_unknown_key_is_denied(server: Server) -> None:
    stranger = server.base / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    cp = server.ssh("apps:list", key=stranger, check=False)
    assert cp.returncode == 255
    assert "Permission denied (publickey)" in cp.stderr
    work = server.app_repo(unique("gs"))
    env_cmd = " ".join(server.ssh_argv(stranger))
    cp = subprocess.run(["git", "push", server.remote("whatever"), "main"], check=False, cwd=work,
                        capture_output=True, text=True, env={**server.git_env, "GIT_SSH_COMMAND": env_cmd}, timeout=60)
    assert cp.returncode != 0
    assert "Permission denied (publickey)" in cp.stderr
    assert not (server.data / "repos" / "whatever.git").exists()


@pytest.mark.parametrize("name", ["../x", "A B", "a" * 64])
def test_invalid_app_name_is_one_line(server: Server, name: str) -> None:
    work = server.app_repo(unique("gs"))
    cp = server.push(work, name)
    assert cp.returncode != 0
    lines = [line for line in cp.stderr.splitlines() if "invalid app name" in line]
    assert len(lines) == 1, cp.stderr
    assert lines[0].startswith("fatal: invalid app name")
    assert sorted(p.name for p in (server.data / "repos").glob("*") if not p.name.startswith("gs-")) == []


def test_deployer_key_is_limited_to_its_apps(server: Server) -> None:
    mine, theirs = unique("gs"), unique("gs")
    key = server.base / f"deployer-{mine}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    server.add_key(f"ci-{mine}", role="deployer", apps=mine, key=key)
    env = {**server.git_env, "GIT_SSH_COMMAND": " ".join(server.ssh_argv(key))}
    work = server.app_repo(mine)

    def push(app: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "push", "-o", "skip-deploy", server.remote(app), "main"], check=False,
                              cwd=work, capture_output=True, text=True, env=env, timeout=60)

    cp = push(theirs)
    assert cp.returncode != 0
    assert f"fatal: ci-{mine} (deployer) has no access to app {theirs}" in cp.stderr
    assert not (server.data / "repos" / f"{theirs}.git").exists()
    cp = push(mine)  # the first push creates the app
    assert cp.returncode == 0, cp.stderr
    assert (server.data / "repos" / f"{mine}.git").is_dir()
    cp = server.ssh("apps:list", key=key)
    assert cp.stdout.split()[-1] == mine
    cp = server.ssh("ssh-keys:list", key=key, check=False)
    assert cp.returncode != 0
    assert cp.stderr.strip() == f"error: ci-{mine} (deployer) may not manage ssh keys: admin only"


def _read_until(proc: subprocess.Popen[str], text: str, timeout: float = 30) -> str:
    assert proc.stderr is not None
    seen, deadline = "", time.monotonic() + timeout
    while text not in seen:
        # bounded even while the process stays silent: a bare read would wait for its next byte for ever
        ready, _, _ = select.select([proc.stderr.fileno()], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"{text!r} never appeared: {seen!r}"
        chunk = os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
        assert chunk, f"push ended before {text!r}: {seen!r}"
        seen += chunk
    return seen


def test_ref_moved_during_push_is_stale(server: Server) -> None:
    app = unique("gs")
    work = first_push(server, app)
    base = server.commit(work, "one", {"x": "1"})
    server.push(work, app, "main:feature")
    mine = server.commit(work, "two", {"x": "2"})
    theirs = server.commit(work, "three", {"x": "3"})
    assert server.push(work, app, "HEAD:other").returncode == 0  # `theirs` is in the server's store
    server.git("reset", "-q", "--hard", mine, cwd=work, check=True)
    repo = server.data / "repos" / f"{app}.git"
    with State(server.data).app_lock(app):  # the lock a deploy would hold
        push = subprocess.Popen(["git", "push", server.remote(app), "main:feature"], cwd=work, env=server.git_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _read_until(push, f"waiting for another deploy of {app} to finish...")
        server.git("--git-dir", str(repo), "update-ref", "refs/heads/feature", theirs, base, cwd=work, check=True)
    _, err = push.communicate(timeout=60)
    assert push.returncode != 0
    assert "! [remote rejected] main -> feature (stale info: ref moved during push; fetch and retry)" in err
    assert refs(server, app)["refs/heads/feature"] == theirs
    fsck(server, app)


def test_client_that_disconnects_mid_push_leaves_a_valid_repo(server: Server) -> None:
    app = unique("gs")
    work = first_push(server, app)
    before = refs(server, app)
    server.commit(work, "big", {"big.bin": os.urandom(2_000_000).hex()})
    with State(server.data).app_lock(app):
        push = subprocess.Popen(["git", "push", server.remote(app), "main:feature"], cwd=work, env=server.git_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        _read_until(push, "waiting for another deploy")
        os.killpg(push.pid, signal.SIGKILL)
        push.wait(10)
    objects = server.data / "repos" / f"{app}.git" / "objects"
    deadline = time.monotonic() + 10  # the worker sees EOF on the pack, cleans up and exits
    while list(objects.glob("tmp_pack_*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(objects.glob("tmp_pack_*"))
    assert refs(server, app) == before
    fsck(server, app)
    cp = server.push(work, app, "main:feature")  # and the next push works
    assert cp.returncode == 0, cp.stderr
    fsck(server, app)


def test_admin_commands_over_ssh(server: Server) -> None:
    app = unique("gs")
    first_push(server, app)
    assert app in server.ssh("apps:list").stdout.split()
    cp = server.ssh("ssh-keys:list", "--format", "json")
    assert '"name": "admin"' in cp.stdout
    cp = server.ssh("no-such-command", check=False)
    assert cp.returncode != 0
    assert cp.stderr.startswith("error: ")
    assert cp.stdout == ""


def test_no_command_no_shell(server: Server) -> None:
    cp = subprocess.run([*server.ssh_argv(server.key), "-T", "pushdock@127.0.0.1"], check=False,
                        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert cp.returncode == 1
    assert "no shell here" in cp.stderr


def test_healthz(server: Server) -> None:
    status, body = http_get(server.http_port, "localhost", "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_add_a_key_over_ssh_then_use_it(server: Server) -> None:
    name = unique("key")
    key = server.base / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = Path(f"{key}.pub").read_text()
    argv = [*server.ssh_argv(server.key), "pushdock@127.0.0.1", "ssh-keys:add", name, "--role", "deployer",
            "--apps", "some-app"]
    cp = subprocess.run(argv, input=pub, capture_output=True, text=True, timeout=60, check=False)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith(f"-----> Added key {name} (deployer, SHA256:")
    assert server.ssh("apps:list", key=key).returncode == 0
    server.ssh("ssh-keys:remove", name)
    assert server.ssh("apps:list", key=key, check=False).returncode == 255  # refused at once
