"""The receive stage: a pushed commit becomes a build directory (its Procfile: pushdock/procfile.py)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from hooks.submodules import export_submodules
from pushdock import pushed
from pushdock.errors import BuildFailed
from pushdock.progress import NULL, Progress

_MAX_BLOB = 256 * 1024 * 1024


def export_tree(
    repo_path: Path, sha: str, dest: Path, *, depth: int = 0, progress: Progress = NULL, submodules: bool = True,
) -> int:
    """Write the tree of commit `sha` into `dest` (files, modes, symlinks, and submodules fetched from the URLs
    of its .gitmodules: hooks/submodules.py; `submodules=False` leaves them out). Returns the file count;
    BuildFailed naming what cannot be had."""
    from dulwich.objects import Commit  # noqa: PLC0415 -- start-up: dulwich loads when first used
    from dulwich.repo import Repo  # noqa: PLC0415 -- start-up: dulwich loads when first used

    from hooks.blobs import write_blob  # noqa: PLC0415 -- start-up: loads only when this path runs

    repo = Repo(str(repo_path))
    try:
        commit = repo[sha.encode()]
        if not isinstance(commit, Commit):
            raise BuildFailed(f"{sha[:12]} is not a commit")
        count = 0
        gitlinks: list[tuple[str, str]] = []
        gitmodules: bytes | None = None
        dest_real = os.path.realpath(dest)
        for entry in repo.object_store.iter_tree_contents(commit.tree):
            rel = entry.path.decode("utf-8", "surrogateescape")
            parts = rel.split("/")
            if any(p in ("", ".", "..", ".git") for p in parts):
                raise BuildFailed(f"refusing to export unsafe path {rel!r}")
            target = Path(dest, *parts)
            if os.path.commonpath([dest_real, os.path.realpath(target.parent)]) != dest_real:
                raise BuildFailed(f"refusing to export {rel!r}: it escapes the build dir through a symlink")
            if entry.mode == 0o160000:  # gitlink: a submodule's commit, fetched once the tree is out
                gitlinks.append((rel, entry.sha.decode()))
                continue
            if stat.S_ISDIR(entry.mode):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel == ".gitmodules" and stat.S_ISREG(entry.mode):
                gitmodules = repo.object_store[entry.sha].as_raw_string()
            if stat.S_ISLNK(entry.mode):
                os.symlink(repo.object_store[entry.sha].as_raw_string(), target)
            else:
                with _new_file(target, 0o755 if entry.mode & 0o111 else 0o644, rel) as f:
                    write_blob(repo.object_store, entry.sha, f)  # a big file is never held whole (hooks/blobs.py)
            count += 1
    finally:
        repo.close()
    if gitlinks and submodules:
        count += export_submodules(gitlinks, gitmodules, dest, depth=depth, export_tree=export_tree, progress=progress)
    return count


@contextlib.contextmanager
def _new_file(target: Path, mode: int, rel: str) -> Iterator[IO[bytes]]:
    """A new file to write, never through a symlink: a malformed tree may name one path twice."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise BuildFailed(f"refusing to export {pushed.excerpt(rel)!r}: the tree names it twice") from None
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        yield f
