"""Warm workers (pushdock/zygote.py): `serve` forks each SSH command's worker from a zygote that has the modules
imported. Real `pushdock serve`, real ssh client; processes are looked at in /proc. No docker: nothing deploys.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushdock import zygote
from tests.harness import Server, started, unique


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with started(tmp_path_factory.mktemp("warm")) as srv:
        yield srv


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def the_zygote(server: Server) -> int:
    assert server.proc is not None
    found = [p for p in children(server.proc.pid) if "pushdock.zygote" in cmdline(p)]
    assert len(found) == 1, [cmdline(p) for p in children(server.proc.pid)]
    return found[0]


def wait_for(check, what: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)
    return found


def held_upload_pack(server: Server, app: str, key: Path | None = None) -> subprocess.Popen[bytes]:
    """`git-upload-pack APP` over ssh with our stdin held open: the worker advertises, then waits for input."""
    p = subprocess.Popen([*server.ssh_argv(key or server.key), "pushdock@127.0.0.1", f"git-upload-pack '/{app}'"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server.git_env)
    assert p.stdout is not None
    assert p.stdout.read(4), "no advertisement"  # the first pkt-line's length: the worker runs
    return p


def pushed_app(server: Server) -> str:
    app = unique("warm")
    work = server.app_repo(app)
    assert server.push(work, app, "main", "-o", "skip-deploy").returncode == 0
    return app


def test_a_command_runs_in_a_forked_session_leader_as_its_key(server: Server) -> None:
    """The worker is a child of the zygote (not a new interpreter), leads its own session, runs as the key that
    connected (a deployer sees only its apps; the event names it), and its stdin's EOF and exit status cross."""
    app = pushed_app(server)
    deployer = server.new_key("warmdeployer")
    server.add_key("warmdeployer", role="deployer", apps=app, key=deployer)
    zyg = the_zygote(server)
    before = set(children(zyg))
    p = held_upload_pack(server, app, key=deployer)
    try:
        (worker,) = wait_for(lambda: set(children(zyg)) - before, "a forked worker")
        assert "pushdock.zygote" in cmdline(worker)  # forked, not exec'd
        assert os.getsid(worker) == worker  # a session of its own: the door's hang-up is killpg(worker)
        environ = Path(f"/proc/{worker}/environ").read_bytes()  # the zygote's start-up environment, not the request's
        assert b"warmdeployer" not in environ
    finally:
        assert p.stdin is not None
        p.stdin.close()  # EOF: dulwich's upload-pack hangs up, as git's does, with 128
    assert p.wait(20) == 128
    wait_for(lambda: worker not in children(zyg), "the worker reaped")
    listed = server.ssh("apps:list", key=deployer).stdout
    assert app in listed.split()
    last = json.loads((server.data / "events.log").read_text().splitlines()[-1])
    assert (last["who"], last["door"], last["action"]) == ("warmdeployer", "ssh", "apps:list"), last
    res = server.ssh("apps:report", "nosuchapp", check=False)
    assert res.returncode == 1 and res.stderr.startswith("error: "), res


def test_stdin_reaches_the_worker_until_eof(server: Server, tmp_path: Path) -> None:
    """`ssh-keys:add` reads the public key from stdin to its end: the bytes and the EOF reach the forked worker."""
    key = server.new_key("warmstdin")
    res = subprocess.run([*server.ssh_argv(server.key), "pushdock@127.0.0.1", "ssh-keys:add warmstdin"],
                         input=Path(f"{key}.pub").read_bytes(), capture_output=True, env=server.git_env, timeout=60)
    assert res.returncode == 0 and res.stderr == b"", res
    assert "warmstdin" in server.ssh("ssh-keys:list").stdout
    assert server.ssh("version", key=key).returncode == 0


def test_a_terminal_session_runs_forked_on_its_pty(server: Server) -> None:
    """`ssh -tt`: the forked worker's stdio is the pty's slave; its output and exit status come back."""
    res = subprocess.run([*server.ssh_argv(server.key), "-tt", "pushdock@127.0.0.1", "apps:report nosuchapp"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=server.git_env, timeout=60)
    assert res.returncode == 1 and "error: " in res.stdout, res  # a terminal has one stream
    res = subprocess.run([*server.ssh_argv(server.key), "-tt", "pushdock@127.0.0.1", "version"],
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, env=server.git_env, timeout=60)
    assert res.returncode == 0 and "pushdock" in res.stdout, res


def test_hang_up_stops_the_workers_session(server: Server) -> None:
    """A follower (`logs -t`) ends with its client: the door's SIGTERM reaches the forked worker's session."""
    app = pushed_app(server)
    zyg = the_zygote(server)
    before = set(children(zyg))
    p = subprocess.Popen([*server.ssh_argv(server.key), "pushdock@127.0.0.1", f"logs {app} -t"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server.git_env)
    try:
        (worker,) = wait_for(lambda: set(children(zyg)) - before, "a forked worker")
        time.sleep(1)
        assert p.poll() is None, p.communicate()  # still following
    finally:
        p.kill()
        p.wait(10)
    wait_for(lambda: worker not in children(zyg), "the follower stopped with its client")


def test_the_zygote_gone_commands_spawn(tmp_path: Path) -> None:
    """Kill the zygote: the next commands spawn `python -m gitserver.worker` as before, logged once."""
    server = Server(tmp_path)
    server.start()
    try:
        server.add_key("admin")
        assert server.ssh("apps:list").returncode == 0
        zyg = the_zygote(server)
        os.kill(zyg, signal.SIGKILL)
        assert server.proc is not None
        for _ in range(3):
            res = server.ssh("apps:list", check=False)
            assert res.returncode == 0 and res.stderr == "", res
        assert zyg not in children(server.proc.pid)  # reaped when serve saw it gone, not left a zombie
        app = pushed_app(server)
        p = held_upload_pack(server, app)
        try:
            spawned = [c for c in children(server.proc.pid) if "gitserver.worker" in cmdline(c)]
            assert len(spawned) == 1
        finally:
            assert p.stdin is not None
            p.stdin.close()
        assert p.wait(20) == 128
        log = (server.data / "logs" / "pushdock.log").read_text()
        assert log.count("warm workers off") == 1, log[-2000:]
    finally:
        server.stop()


def test_workers_modules_hand_down_nothing_live() -> None:
    """What the zygote imports starts no thread and opens no socket: a fork would hand them down (checked at its
    start too: it refuses to serve, and serve spawns)."""
    code = ("import sys; from pushdock import zygote; zygote.warm(['gitserver.worker', 'web.worker']); "
            "print(zygote.hazards(-1))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    t = threading.Thread(target=time.sleep, args=(1,))
    t.start()
    try:
        assert any(h.startswith("thread ") for h in zygote.hazards(-1))
    finally:
        t.join()
