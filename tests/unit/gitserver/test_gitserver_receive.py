"""PushdockReceivePack driven by the real git client over git:// (no SSH, no docker: nothing here deploys)."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dulwich.client import TCPGitClient
from dulwich.objects import Blob, Commit, Tree
from dulwich.pack import pack_objects_to_data
from dulwich.protocol import Protocol
from dulwich.repo import Repo

from gitserver.backend import AppBackend
from gitserver.receive import PushdockReceivePack, one_line
from pushdock.context import Context

APP = "myapp"


@pytest.fixture
def app(ctx: Context) -> str:
    ctx.state.create_app(APP)
    ctx.state.set("git", APP, "deploy-branch", "main")  # pushes to other branches store without deploying
    return APP


@pytest.fixture
def work(git_repo) -> Path:  # type: ignore[no-untyped-def]
    return git_repo({"Procfile": "web: python -m http.server $PORT\n", "app.py": "print('hi')\n"})


def server_refs(ctx: Context) -> dict[bytes, bytes]:
    repo = Repo(str(ctx.state.repo_path(APP)))
    try:
        return {k: v for k, v in repo.get_refs().items() if k != b"HEAD"}
    finally:
        repo.close()


def fsck(git: Any, ctx: Context) -> None:
    cp = git("--git-dir", str(ctx.state.repo_path(APP)), "fsck", "--strict")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "missing" not in cp.stdout + cp.stderr


def test_non_deploy_branch_is_stored(ctx: Context, app: str, daemon: str, work: Path, git: Any) -> None:
    sha = git.head(work)
    cp = git("push", f"{daemon}/{app}", "main:feature", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert "branch feature stored, not deployed (the deploy branch is main)" in cp.stderr
    assert server_refs(ctx) == {b"refs/heads/feature": sha.encode()}
    ls = git("ls-remote", f"{daemon}/{app}", cwd=work, check=True).stdout
    assert f"{sha}\trefs/heads/feature" in ls
    fsck(git, ctx)
    events = [e for e in ctx.state.read_events() if e["action"] == "git:push"]
    assert 0 <= events[-1]["duration"] < 60
    assert events[-1] | {"time": 0, "duration": 0} == {
        "action": "git:push", "app": APP, "door": "cli", "who": "tester", "result": "ok", "time": 0,
        "ref": "refs/heads/feature", "sha": sha, "duration": 0,
    }


def test_second_push_is_incremental_and_clone_works(
    ctx: Context, app: str, daemon: str, work: Path, git_repo, git: Any, tmp_path: Path
) -> None:
    git("push", f"{daemon}/{app}", "main:feature", cwd=work, check=True)
    sha = git_repo.commit(work, {"app.py": "print('two')\n", "lib/x.py": "x = 1\n"})
    git("push", f"{daemon}/{app}", "main:feature", cwd=work, check=True)
    assert server_refs(ctx)[b"refs/heads/feature"] == sha.encode()
    fsck(git, ctx)
    git("clone", "-q", "-b", "feature", f"{daemon}/{app}", str(tmp_path / "clone"), check=True)
    assert (tmp_path / "clone" / "lib" / "x.py").read_text() == "x = 1\n"


def test_skip_deploy_stores_the_deploy_branch(ctx: Context, app: str, daemon: str, work: Path, git: Any) -> None:
    cp = git("push", "-o", "skip-deploy", f"{daemon}/{app}", "main", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert "main stored, deploy skipped (-o skip-deploy)" in cp.stderr
    assert server_refs(ctx) == {b"refs/heads/main": git.head(work).encode()}


def test_unknown_push_option_rejects_every_ref(ctx: Context, app: str, daemon: str, work: Path, git: Any) -> None:
    cp = git("push", "-o", "frobnicate=1", f"{daemon}/{app}", "main:a", "main:b", cwd=work)
    assert cp.returncode != 0
    assert "[remote rejected] main -> a (unknown push option 'frobnicate=1')" in cp.stderr
    assert "[remote rejected] main -> b (unknown push option 'frobnicate=1')" in cp.stderr
    assert server_refs(ctx) == {}


@pytest.mark.parametrize(("refspec", "reason"), [
    ("main:refs/tags/v1", "only branches and refs/meta/config can be pushed"),
    ("main:refs/meta/config", "unexpected file 'Procfile': refs/meta/config holds only env and pushdock.toml"),
    ("main:refs/pull/1/head", "only branches and refs/meta/config can be pushed"),
])
def test_only_branches(ctx: Context, app: str, daemon: str, work: Path, git: Any, refspec: str, reason: str) -> None:
    cp = git("push", f"{daemon}/{app}", refspec, cwd=work)
    assert cp.returncode != 0
    assert f"({reason})" in cp.stderr
    assert server_refs(ctx) == {}


def test_deleting_the_deploy_branch_is_refused(ctx: Context, app: str, daemon: str, work: Path, git: Any) -> None:
    git("push", "-o", "skip-deploy", f"{daemon}/{app}", "main", "main:feature", cwd=work, check=True)
    cp = git("push", f"{daemon}/{app}", ":main", cwd=work)
    assert "(the deploy branch main cannot be deleted)" in cp.stderr
    cp = git("push", f"{daemon}/{app}", ":feature", cwd=work)
    assert cp.returncode == 0, cp.stderr
    assert set(server_refs(ctx)) == {b"refs/heads/main"}


def test_atomic_push_fails_together(ctx: Context, app: str, daemon: str, work: Path, git: Any) -> None:
    cp = git("push", "--atomic", f"{daemon}/{app}", "main:feature", "main:refs/tags/v1", cwd=work)
    assert cp.returncode != 0
    assert "main -> v1 (only branches and refs/meta/config can be pushed)" in cp.stderr
    assert "main -> feature (atomic push failed)" in cp.stderr
    assert server_refs(ctx) == {}


def _wait_for(stream, text: str, timeout: float = 20) -> str:  # type: ignore[no-untyped-def]
    """Read a child's stderr until `text` shows up (git ends remote lines with padding, so read bytes)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"{text!r} never appeared in: {seen!r}"
        chunk = os.read(stream.fileno(), 4096).decode(errors="replace")
        assert chunk, f"stream ended before {text!r}: {seen!r}"
        seen += chunk
    return seen


def test_ref_moved_while_waiting_for_the_lock_is_stale(
    ctx: Context, app: str, daemon: str, work: Path, git_repo, git: Any
) -> None:
    first = git.head(work)
    git("push", f"{daemon}/{app}", "main:feature", cwd=work, check=True)
    second = git_repo.commit(work, {"app.py": "print(2)\n"})
    other = git_repo.commit(work, {"app.py": "print(3)\n"})
    git("push", f"{daemon}/{app}", "HEAD:side", cwd=work, check=True)  # `other` is now in the store
    git("reset", "-q", "--hard", second, cwd=work, check=True)
    with ctx.state.app_lock(APP):
        push = git.popen("push", f"{daemon}/{app}", "main:feature", cwd=work)
        _wait_for(push.stderr, f"waiting for another deploy of {APP} to finish...")
        # someone else moves the ref between the advertisement and the update
        repo = Repo(str(ctx.state.repo_path(APP)))
        assert repo.refs.set_if_equals(b"refs/heads/feature", first.encode(), other.encode())
        repo.close()
    _, err = push.communicate(timeout=30)
    assert push.returncode != 0
    assert "main -> feature (stale info: ref moved during push; fetch and retry)" in err
    assert server_refs(ctx)[b"refs/heads/feature"] == other.encode()


def test_lock_timeout_rejects_every_ref(
    settings, ctx: Context, app: str, daemon: str, work: Path, git: Any
) -> None:
    settings.lock_timeout = 0.5
    with ctx.state.app_lock(APP):
        cp = git("push", f"{daemon}/{app}", "main:a", "main:b", cwd=work)
    assert cp.returncode != 0
    assert "main -> a (app myapp is busy with another deploy (waited 0s))" in cp.stderr
    assert server_refs(ctx) == {}


def test_push_over_the_size_limit_is_refused(
    settings, ctx: Context, app: str, daemon: str, git_repo, git: Any
) -> None:
    settings.max_push_bytes = 20_000
    work = git_repo({"big.bin": os.urandom(60_000).hex()})
    cp = git("push", f"{daemon}/{app}", "main:feature", cwd=work)
    assert cp.returncode != 0
    assert "pack exceeds the limit of 20000 bytes" in cp.stderr
    assert server_refs(ctx) == {}
    assert not list((ctx.state.repo_path(APP) / "objects").glob("tmp_pack_*"))


def test_shallow_push_is_accepted_and_recorded(
    ctx: Context, app: str, daemon: str, git_repo, git: Any, tmp_path: Path
) -> None:
    origin = git_repo({"a": "1"})
    for i in range(3):
        git_repo.commit(origin, {"a": str(i)})
    clone = tmp_path / "shallow"
    git("clone", "-q", "--depth", "1", f"file://{origin}", str(clone), check=True)
    tip = git_repo.commit(clone, {"b": "new"})
    cp = git("push", f"{daemon}/{app}", "HEAD:refs/heads/feature", cwd=clone)
    assert cp.returncode == 0, cp.stderr
    assert server_refs(ctx)[b"refs/heads/feature"] == tip.encode()
    assert (ctx.state.repo_path(APP) / "shallow").read_text().strip() == git.head(origin)
    fsck(git, ctx)


# -- pushes the git client never makes: crafted with dulwich's client ---------------------------------
def _send(daemon: str, ref: bytes, new: bytes, objects: list) -> dict:  # type: ignore[type-arg]
    host, port = daemon.removeprefix("git://").split(":")
    client = TCPGitClient(host, int(port))
    result = client.send_pack(
        f"/{APP}".encode(), lambda refs: {ref: new},
        lambda have, want, ofs_delta=False, progress=None: pack_objects_to_data(objects),
    )
    return result.ref_status or {}


def _commit(tree: Tree, parents: list[bytes] = ()) -> Commit:  # type: ignore[assignment]
    c = Commit()
    c.tree, c.parents = tree.id, list(parents)
    c.author = c.committer = b"T <t@example.com>"
    c.author_time = c.commit_time = 1_700_000_000
    c.author_timezone = c.commit_timezone = 0
    c.message = b"crafted"
    return c


def test_bogus_tip_is_refused(ctx: Context, app: str, daemon: str, git: Any) -> None:
    status = _send(daemon, b"refs/heads/evil", b"de" * 20, [])
    assert status[b"refs/heads/evil"] == "bad push: missing commit " + "de" * 20
    assert server_refs(ctx) == {}


def test_tip_that_is_a_blob_is_refused(ctx: Context, app: str, daemon: str) -> None:
    blob = Blob.from_string(b"not a commit")
    status = _send(daemon, b"refs/heads/evil", blob.id, [blob])
    assert status[b"refs/heads/evil"] == f"bad push: commit {blob.id.decode()} is a blob"
    assert server_refs(ctx) == {}


def test_commit_without_its_tree_is_refused(ctx: Context, app: str, daemon: str, git: Any) -> None:
    tree = Tree()
    tree.add(b"f", 0o100644, Blob.from_string(b"never sent").id)
    commit = _commit(tree)
    status = _send(daemon, b"refs/heads/evil", commit.id, [commit])
    assert status[b"refs/heads/evil"] == f"bad push: missing tree {tree.id.decode()}"
    status = _send(daemon, b"refs/heads/evil", commit.id, [commit, tree])
    assert status[b"refs/heads/evil"].startswith("bad push: missing blob")
    assert server_refs(ctx) == {}
    fsck(git, ctx)


def test_funny_ref_is_refused(ctx: Context, app: str, daemon: str, work: Path, git: Any) -> None:
    tree = Tree()
    commit = _commit(tree)
    status = _send(daemon, b"refs/heads/a..b", commit.id, [commit, tree])
    assert status[b"refs/heads/a..b"] == "funny refname"


# -- pieces ----------------------------------------------------------------------------------------------
def test_one_line() -> None:
    assert one_line("build failed:\n  step 3\r\n  exit 1") == b"build failed: step 3 exit 1"
    assert len(one_line("x" * 500)) == 200
    assert one_line("") == b"rejected"


def test_keepalive_packets_during_silence(ctx: Context, app: str) -> None:
    out = io.BytesIO()
    handler = PushdockReceivePack(AppBackend(ctx), [f"/{APP}"], Protocol(io.BytesIO().read, out.write))
    handler.keepalive_after = 0.2
    handler._sideband = True
    with handler._keepalive():
        time.sleep(1.0)
    handler.repo.close()
    assert out.getvalue().count(b"0005\x01") >= 2


def test_progress_writes_do_not_interleave(ctx: Context, app: str) -> None:
    out = io.BytesIO()
    handler = PushdockReceivePack(AppBackend(ctx), [f"/{APP}"], Protocol(io.BytesIO().read, out.write))
    handler._sideband = True
    line = "x" * 1000

    def spam() -> None:
        for _ in range(200):
            handler.say(line)

    threads = [threading.Thread(target=spam) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    handler.repo.close()
    data, pos, packets = out.getvalue(), 0, 0
    while pos < len(data):  # every packet is intact: a valid length, then band 2, then the line
        size = int(data[pos:pos + 4], 16)
        assert data[pos + 4:pos + size] == b"\x02" + line.encode() + b"\n"
        pos, packets = pos + size, packets + 1
    assert packets == 800


def test_a_vanished_client_never_breaks_progress(ctx: Context, app: str) -> None:
    def broken(data: bytes) -> None:
        raise BrokenPipeError("gone")

    handler = PushdockReceivePack(AppBackend(ctx), [f"/{APP}"], Protocol(io.BytesIO().read, broken))
    handler._sideband = True
    handler.say("hello")
    assert handler.client_gone
    handler.say("still fine")
    handler.repo.close()

