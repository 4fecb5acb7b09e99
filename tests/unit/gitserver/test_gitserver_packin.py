"""gitserver/packin.py against dulwich's own ingest, on packs the real `git pack-objects` makes."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import zlib
from pathlib import Path

import pytest
from dulwich.object_store import PackInputTooLarge
from dulwich.objects import ObjectFormatException
from dulwich.pack import UnresolvedDeltas
from dulwich.repo import Repo

from gitserver.packin import BadPack, add_pack


def entries(repo: Repo) -> list[tuple[bytes, int, int | None]]:
    return sorted(e for p in repo.object_store.packs for e in p.index.iterentries())


@pytest.fixture
def history(git_repo) -> Path:
    """A repository whose pack has deltas (several versions of one file), a binary file and a subdirectory."""
    text = "".join(f"line {i}: some text that repeats enough to be stored as a delta\n" for i in range(300))
    work = git_repo({"a.txt": text, "bin/data": "x" * 70000})
    for n in range(4):
        git_repo.commit(work, {"a.txt": text + f"change {n}\n" * (n + 1), f"dir/f{n}": str(n)})
    return work


def pack_of(work: Path, revs: str, env: dict[str, str], *, thin: bool = False) -> bytes:
    argv = ["git", "pack-objects", "--stdout", "--revs", *(["--thin"] if thin else [])]
    return subprocess.run(argv, cwd=work, input=revs.encode(), capture_output=True, check=True, env=env).stdout


def test_the_index_is_the_one_dulwich_writes(history, git_repo, tmp_path) -> None:
    pack = pack_of(history, "HEAD\n", git_repo.env)
    mine, theirs = Repo.init_bare(str(tmp_path / "mine"), mkdir=True), Repo.init_bare(str(tmp_path / "theirs"),
                                                                                       mkdir=True)
    add_pack(mine.object_store, io.BytesIO(pack).read, None)
    theirs.object_store.add_thin_pack(io.BytesIO(pack).read, None)
    assert entries(mine) == entries(theirs) and len(entries(mine)) > 15
    fsck = subprocess.run(["git", "--git-dir", str(tmp_path / "mine"), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, text=True, env=git_repo.env)
    assert fsck.returncode == 0, fsck.stderr


def test_a_thin_pack_is_completed_with_the_bases_the_store_has(history, git_repo, tmp_path) -> None:
    repo = Repo.init_bare(str(tmp_path / "r"), mkdir=True)
    add_pack(repo.object_store, io.BytesIO(pack_of(history, "HEAD~2\n", git_repo.env)).read, None)
    thin = pack_of(history, "HEAD\n^HEAD~2\n", git_repo.env, thin=True)
    add_pack(repo.object_store, io.BytesIO(thin).read, io.BytesIO(thin).read1)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=history, capture_output=True, text=True,
                          check=True).stdout.strip()
    repo.refs[b"refs/heads/main"] = head.encode()
    fsck = subprocess.run(["git", "--git-dir", str(tmp_path / "r"), "fsck", "--strict", "--no-dangling"],
                          capture_output=True, text=True, env=git_repo.env)
    assert fsck.returncode == 0, fsck.stderr
    empty = Repo.init_bare(str(tmp_path / "empty"), mkdir=True)  # without the bases: refused, nothing left
    with pytest.raises(UnresolvedDeltas):
        add_pack(empty.object_store, io.BytesIO(thin).read, None)
    assert not [p for p in (tmp_path / "empty" / "objects").rglob("*") if p.is_file()]


def _pack(*objects: tuple[int, bytes]) -> bytes:
    body = b"PACK" + (2).to_bytes(4, "big") + len(objects).to_bytes(4, "big")
    for kind, data in objects:
        size = len(data)
        header = bytearray()
        byte = (kind << 4) | (size & 0x0F)
        size >>= 4
        while size:
            header.append(byte | 0x80)
            byte, size = size & 0x7F, size >> 7
        header.append(byte)
        body += bytes(header) + zlib.compress(data)
    return body + hashlib.sha1(body).digest()


def test_malformed_packs_are_refused_and_leave_nothing(tmp_path) -> None:
    repo = Repo.init_bare(str(tmp_path / "r"), mkdir=True)
    good = _pack((3, b"hello\n"))
    cases = [
        (good[:-1] + bytes([good[-1] ^ 1]), BadPack, "checksum"),
        (good[:20], BadPack, "ends early"),
        (b"JUNK" + good[4:], BadPack, "not a git pack"),
        (_pack((2, b"100644 a\0short")), ObjectFormatException, ""),  # a tree that does not parse
    ]
    for data, error, words in cases:
        with pytest.raises(error, match=words or None):
            add_pack(repo.object_store, io.BytesIO(data).read, None)
    with pytest.raises(PackInputTooLarge):
        add_pack(repo.object_store, io.BytesIO(_pack((3, os.urandom(5000)))).read, None, max_input_size=100)
    assert not [p for p in (tmp_path / "r" / "objects").rglob("*") if p.is_file()]
    add_pack(repo.object_store, io.BytesIO(good).read, None)
    assert repo[hashlib.sha1(b"blob 6\0hello\n").hexdigest().encode()].data == b"hello\n"
