"""The receive stage: a pushed commit becomes a build directory; its Procfile becomes process types."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from pushdock.errors import BuildFailed, UsageError
from pushdock.progress import NULL, Progress

PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$")
_MAX_BLOB = 256 * 1024 * 1024


def export_tree(
    repo_path: Path, sha: str, dest: Path, *, depth: int = 0, progress: Progress = NULL, submodules: bool = True,
) -> int:
    """Write the tree of commit `sha` into `dest` (files, modes, symlinks, and submodules fetched from the URLs
    of its .gitmodules: hooks/submodules.py; `submodules=False` leaves them out). Returns the file count;
    BuildFailed naming what cannot be had."""
    from dulwich.objects import Commit
    from dulwich.repo import Repo

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
            if not os.path.realpath(target.parent).startswith(dest_real):
                raise BuildFailed(f"refusing to export {rel!r}: it escapes the build dir through a symlink")
            if entry.mode == 0o160000:  # gitlink: a submodule's commit, fetched once the tree is out
                gitlinks.append((rel, entry.sha.decode()))
                continue
            if stat.S_ISDIR(entry.mode):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            blob = repo.object_store[entry.sha]
            if rel == ".gitmodules" and stat.S_ISREG(entry.mode):
                gitmodules = blob.as_raw_string()
            if stat.S_ISLNK(entry.mode):
                os.symlink(blob.as_raw_string(), target)
            else:
                target.write_bytes(blob.as_raw_string())
                os.chmod(target, 0o755 if entry.mode & 0o111 else 0o644)
            count += 1
    finally:
        repo.close()
    if gitlinks and submodules:
        from hooks.submodules import export_submodules

        count += export_submodules(gitlinks, gitmodules, dest, depth=depth, progress=progress)
    return count


def parse_procfile(text: str) -> dict[str, str]:
    """Procfile lines `type: command` (comments and blank lines ignored); UsageError on a bad line."""
    processes: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = PROCFILE_LINE.match(line)
        if not m:
            raise UsageError(f"Procfile line {n} is not 'type: command': {line[:60]!r}")
        name, command = m.group(1).lower(), m.group(2).strip()
        if name in processes:
            raise UsageError(f"Procfile line {n}: process type {name!r} is defined twice")
        processes[name] = command
    return processes


def read_procfile(build_dir: Path) -> dict[str, str]:
    path = build_dir / "Procfile"
    if not path.is_file():
        return {}
    return parse_procfile(path.read_text(errors="replace"))
