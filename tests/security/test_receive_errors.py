"""Claim: a malformed push gets a one-line answer, never an internal error. Ref names with a space or a NUL,
a command line with a fourth field, a ref name that is not UTF-8 and a thin pack against objects the server
lacks are refused in one line; nothing is stored.

The real ssh client talks to the embedded server. git itself never sends most of these, so those tests speak
receive-pack's pkt-lines over ssh themselves (as a broken or hostile client would).
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from pathlib import Path

import pytest

from tests.harness import Server, unique

ZERO = b"0" * 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("receive-errors")).start()
    srv.add_key()
    yield srv
    srv.stop()


def pkt(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def empty_pack() -> bytes:
    body = b"PACK" + struct.pack(">II", 2, 0)
    return body + hashlib.sha1(body).digest()


def receive_pack(server: Server, app: str, lines: list[bytes], pack: bytes) -> subprocess.CompletedProcess[bytes]:
    """Send `lines` (the first carries the capabilities) and `pack` to git-receive-pack over real ssh."""
    data = b"".join(pkt(line + b"\n") for line in lines) + b"0000" + pack
    argv = [*server.ssh_argv(server.key), "pushdock@127.0.0.1", f"git-receive-pack '{app}'"]
    return subprocess.run(argv, input=data, capture_output=True, timeout=60, env=server.git_env)


def seed(server: Server, tmp_path: Path, app: str) -> tuple[Path, str]:
    """An app with `main` stored (not deployed) as its deploy branch; its work tree and the tip."""
    work = tmp_path / app
    work.mkdir()
    server.git("init", "-q", "-b", "main", cwd=work, check=True)
    sha = server.commit(work, "initial", {"a.txt": "a\n"})
    cp = server.push(work, app, "main", "-o", "skip-deploy")
    assert cp.returncode == 0, cp.stderr
    server.ssh("git:set", app, "deploy-branch", "main")  # other branches are stored, never deployed
    return work, sha


def branches(server: Server, app: str) -> list[str]:
    return json.loads(server.ssh("git:report", app, "--format", "json").stdout)["branches"].split()


@pytest.mark.parametrize("ref", [b"refs/heads/a b", b"refs/heads/x y z"], ids=["space", "four-fields"])
def test_a_ref_name_with_a_space_or_a_fourth_field_is_refused_in_one_line(server, tmp_path, ref) -> None:
    app = unique("sp")
    _, sha = seed(server, tmp_path, app)
    res = receive_pack(server, app, [ZERO + b" " + sha.encode() + b" " + ref + b"\0report-status"], empty_pack())
    out = res.stdout.decode(errors="replace")
    assert b"internal error" not in res.stderr + res.stdout, res.stderr
    assert "unpack ok" in out and f"ng {ref.decode()} funny refname" in out, (out, res.stderr)
    assert branches(server, app) == ["main"]


def test_a_nul_in_a_ref_name_is_refused_in_one_line(server, tmp_path) -> None:
    app = unique("nul")
    _, sha = seed(server, tmp_path, app)
    # On the first line the NUL starts the capabilities (as in C git); a second NUL is not a capability.
    res = receive_pack(server, app, [ZERO + b" " + sha.encode() + b" refs/heads/a\0b\0report-status"], empty_pack())
    err = res.stderr.decode(errors="replace")
    assert res.returncode != 0 and "internal error" not in err, err
    assert err.startswith("fatal: protocol error: ") and err.count("\n") == 1, err
    # On a later line the NUL is part of the ref name: that ref is refused, the other one is stored.
    res = receive_pack(server, app, [ZERO + b" " + sha.encode() + b" refs/heads/ok\0report-status",
                                     ZERO + b" " + sha.encode() + b" refs/heads/x\0y"], empty_pack())
    out = res.stdout.decode(errors="replace")
    assert b"internal error" not in res.stderr + res.stdout, res.stderr
    assert "ng refs/heads/x\0y funny refname" in out, out
    assert "ok refs/heads/ok" in out and branches(server, app) == ["main", "ok"]


def test_a_malformed_command_line_is_a_protocol_error(server, tmp_path) -> None:
    app = unique("bad")
    seed(server, tmp_path, app)
    res = receive_pack(server, app, [b"not-a-sha " + ZERO + b" refs/heads/main\0report-status"], empty_pack())
    err = res.stderr.decode(errors="replace")
    assert res.returncode != 0 and err.startswith("fatal: protocol error: expected 'OLD NEW REF'"), err
    assert err.count("\n") == 1 and "internal error" not in err


def test_a_ref_name_that_is_not_utf8_is_refused_and_git_report_works(server, tmp_path) -> None:
    app = unique("utf")
    work, sha = seed(server, tmp_path, app)
    subprocess.run([b"git", b"update-ref", b"refs/heads/caf\xe9", sha.encode()], cwd=work, check=True,
                   env=server.git_env)
    res = subprocess.run([b"git", b"push", server.remote(app).encode(), b"refs/heads/caf\xe9"], cwd=work,
                         capture_output=True, env=server.git_env, timeout=60)
    assert res.returncode != 0 and b"ref names must be valid UTF-8" in res.stderr, res.stderr
    report = server.ssh("git:report", app, check=False)
    assert report.returncode == 0 and "internal error" not in report.stderr, report.stderr
    assert branches(server, app) == ["main"]


def test_a_thin_pack_against_objects_the_server_lacks_is_one_line(server, tmp_path) -> None:
    app = unique("thin")
    work, _ = seed(server, tmp_path, app)
    text = "".join(f"line {i} of a file long enough to be stored as a delta\n" for i in range(400))
    base = server.commit(work, "base (never pushed)", {"big.txt": text})
    tip = server.commit(work, "tip", {"big.txt": text + "one more line\n"})
    pack = subprocess.run(["git", "pack-objects", "--thin", "--stdout", "--revs"], cwd=work, check=True,
                          input=f"{tip}\n^{base}\n".encode(), capture_output=True, env=server.git_env).stdout
    res = receive_pack(server, app, [ZERO + b" " + tip.encode() + b" refs/heads/thin\0report-status"], pack)
    out = res.stdout.decode(errors="replace")
    assert "unpack the pack refers to objects the server does not have" in out, (out, res.stderr)
    assert "ng refs/heads/thin unpacker error" in out
    assert branches(server, app) == ["main"]
