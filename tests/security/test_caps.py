"""Claim: no client can hold the doors' resources without bound. SSH sessions are capped per key and per client
address (each is a worker process), and a session over a cap is refused in one line at once; a command too long
to hand to a worker is refused in one line; the HTTP door closes connections that stay silent.

Real ssh clients and raw sockets against a real `pushdock serve` with small caps.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import Server, unique, wait_port

PER_KEY, PER_HOST, IDLE = 2, 3, 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("caps"), PUSHDOCK_SSH_MAX_SESSIONS_PER_KEY=str(PER_KEY),
                 PUSHDOCK_SSH_MAX_SESSIONS_PER_HOST=str(PER_HOST), PUSHDOCK_HTTP_IDLE_TIMEOUT=str(IDLE)).start()
    srv.add_key()
    srv.other = srv.base / "other"  # type: ignore[attr-defined]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(srv.other)], check=True)  # type: ignore[attr-defined]
    srv.add_key("other", key=srv.other)  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def hold_session(server: Server, key: Path, app: str) -> subprocess.Popen[bytes]:
    """A session that stays open: receive-pack advertises, then waits for the push that never comes."""
    argv = [*server.ssh_argv(key), "pushdock@127.0.0.1", f"git-receive-pack '{app}'"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=server.git_env)
    assert p.stdout is not None
    assert p.stdout.read(4), "the session did not start"  # the advertisement's first pkt-line: the worker runs
    return p


def end(p: subprocess.Popen[bytes]) -> None:
    assert p.stdin is not None
    p.stdin.close()  # the client's EOF: the worker ends
    p.wait(20)


def test_ssh_sessions_are_capped_per_key_and_per_host(server) -> None:
    app = unique("caps")
    held = [hold_session(server, server.key, app) for _ in range(PER_KEY)]
    try:
        started = time.monotonic()
        res = server.ssh("apps:list", check=False, timeout=20)
        assert res.returncode == 1 and time.monotonic() - started < 10, res
        assert res.stderr.startswith("error: too many sessions for key tester: 2 already running"), res.stderr
        assert res.stderr.count("\n") == 1 and "PUSHDOCK_SSH_MAX_SESSIONS_PER_KEY" in res.stderr

        held.append(hold_session(server, server.other, app))  # another key: under its cap, and the host's
        res = server.ssh("apps:list", key=server.other, check=False, timeout=20)
        assert res.returncode == 1 and res.stderr.startswith("error: too many sessions from 127.0.0.1: 3 "), res
        assert res.stderr.count("\n") == 1

        end(held.pop(0))  # a session ends: its place is free again
        assert server.ssh("apps:list", timeout=20).returncode == 0
    finally:
        for p in held:
            end(p)
    assert server.ssh("apps:list", key=server.other, timeout=20).returncode == 0


@pytest.mark.parametrize("size", [140_000, 200_000])
def test_a_command_too_long_for_a_worker_is_refused_in_one_line(server, size) -> None:
    # ssh joins its arguments with spaces; one argument of that size would be too long for ssh itself
    pairs = [f"K{i}=" + "x" * 49_990 for i in range(size // 50_000 + 1)]
    res = subprocess.run([*server.ssh_argv(server.key), "pushdock@127.0.0.1", "config:set", "no-such-app", *pairs],
                         capture_output=True, text=True, timeout=30, env=server.git_env)
    assert res.returncode == 1 and "internal error" not in res.stderr, res.stderr
    assert res.stderr.startswith("error: the command is too long") and res.stderr.count("\n") == 1, res.stderr


def test_the_http_door_closes_idle_connections(server) -> None:
    wait_port(server.http_port)
    idle = [socket.create_connection(("127.0.0.1", server.http_port), timeout=IDLE + 9) for _ in range(50)]
    try:
        started = time.monotonic()
        for s in idle:
            assert s.recv(1) == b"", "the server answered a request never sent"  # closed by the server
        assert time.monotonic() - started < IDLE + 8
    except TimeoutError:
        pytest.fail(f"an idle connection stayed open past {IDLE + 9}s")
    finally:
        for s in idle:
            s.close()
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as s:  # the door still answers
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert s.recv(100).split(b" ", 2)[1] == b"200"  # (uvicorn answers HTTP/1.1 to an HTTP/1.0 request)
    assert "Traceback" not in (server.base / "serve.log").read_text()


def test_a_large_push_is_taken_in_with_bounded_memory(server, tmp_path) -> None:
    """A pushed blob is never held whole while the pack is taken in: a 48 MB incompressible blob costs the
    worker far less than its size (dulwich's own ingest held it twice: +96 MB)."""
    app = unique("big")
    work = tmp_path / "big"
    work.mkdir()
    server.git("init", "-q", "-b", "main", cwd=work, check=True)
    server.commit(work, "small", {"a.txt": "a\n"})
    assert server.push(work, app, "main", "-o", "skip-deploy").returncode == 0
    small = server.worker_peaks("git-receive-pack")[-1]
    (work / "big.bin").write_bytes(os.urandom(48 << 20))
    server.commit(work, "big")
    res = server.push(work, app, "main", "-o", "skip-deploy")
    assert res.returncode == 0, res.stderr
    big = server.worker_peaks("git-receive-pack")[-1]
    assert big - small < 16 << 10, f"the worker's peak grew by {(big - small) >> 10} MiB for a 48 MiB blob"
    clone = tmp_path / "clone"
    assert server.git("clone", "-q", server.remote(app), str(clone), cwd=tmp_path).returncode == 0
    assert (clone / "big.bin").read_bytes() == (work / "big.bin").read_bytes()
