"""Files of a pushed tree, read on the host: only inside the export directory, never through a symlink out.

A push is untrusted. Its tree is exported to a build directory (hooks/source.py), and a few of its files
are read by pushdock itself (Procfile, app.json, .buildpacks, .env, project.toml, the Dockerfile,
.dockerignore). Every such read goes through this module: the path is resolved, and a file that resolves
outside the export directory (`Procfile -> /etc/shadow`, `app.json -> ../../keys/...`) is refused, not
read; symlinks that stay inside the tree are followed. Reads are capped in size, and what a reason may
quote of a file is a short, printable excerpt (`excerpt`).

What the build itself does with the tree (a container, the engine's build context) is the container's
business: there a symlink resolves inside the container, never on the host.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from pushdock.errors import UsageError

MAX_FILE = 1024 * 1024
EXCERPT = 40


def _relative(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or any(p in ("", "..") for p in path.parts):
        raise UsageError(f"invalid path in the pushed tree: {excerpt(rel)!r}")
    return path


def locate(root: Path, rel: str) -> Path | None:
    """The real path of `rel` if it is a regular file of the tree in `root`; None if absent or not a file.

    UsageError if `rel` (or a directory on its way) is a symlink that resolves outside `root`.
    """
    base = os.path.realpath(root)
    real = os.path.realpath(os.path.join(base, *_relative(rel).parts))
    if os.path.commonpath([base, real]) != base:
        raise UsageError(f"{rel} is a symlink out of the pushed tree: pushdock does not read it",
                         hint="commit the file itself, or a symlink to a file inside the repository")
    try:
        st = os.stat(real, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Path(real) if stat.S_ISREG(st.st_mode) else None


def is_file(root: Path, rel: str) -> bool:
    """True if `rel` is a regular file inside the tree (UsageError for a symlink out, as `locate`)."""
    return locate(root, rel) is not None


def exists(root: Path, rel: str) -> bool:
    """True if anything is at `rel` in the tree: a file, a directory or a symlink (even a dangling one).

    Never follows the last symlink, so a link out of the tree counts as present, and is never read."""
    parts = _relative(rel).parts
    base = os.path.realpath(root)
    parent = os.path.realpath(os.path.join(base, *parts[:-1]))
    if os.path.commonpath([base, parent]) != base:
        raise UsageError(f"{rel} is under a symlink out of the pushed tree: pushdock does not read it")
    try:
        os.lstat(os.path.join(parent, parts[-1]))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def read_bytes(root: Path, rel: str, *, limit: int = MAX_FILE) -> bytes | None:
    """`rel`'s content, or None if the tree has no such file; UsageError if it leads out or is over `limit`."""
    real = locate(root, rel)
    if real is None:
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOENT):  # replaced meanwhile: nothing safe to read
            return None
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{rel} is larger than {limit // 1024} KiB")
    return data


def read_text(root: Path, rel: str, *, limit: int = MAX_FILE) -> str | None:
    """`read_bytes` decoded as UTF-8 (undecodable bytes replaced)."""
    data = read_bytes(root, rel, limit=limit)
    return None if data is None else data.decode("utf-8", "replace")


def write_new(root: Path, rel: str, text: str) -> None:
    """Create file `rel` (a name at the top of the tree); never through a symlink, never over a file."""
    if len(_relative(rel).parts) != 1:
        raise UsageError(f"invalid path in the pushed tree: {excerpt(rel)!r}")
    fd = os.open(os.path.join(os.path.realpath(root), rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def drop_links_out(root: Path) -> int:
    """Remove every symlink of the tree in `root` that resolves outside it; return how many.

    For a throwaway export that programs on this host look at (the shipped buildpacks' `bin/detect`,
    run by `builder:report`): they test files with the shell, which would follow a link out."""
    base = os.path.realpath(root)
    dropped = 0
    for folder, dirs, files in os.walk(base):  # not into linked folders: those are links themselves
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and os.path.commonpath([base, os.path.realpath(path)]) != base:
                os.unlink(path)
                dropped += 1
    return dropped


def excerpt(text: str, size: int = EXCERPT) -> str:
    """A short, printable excerpt of pushed content, for a reason shown to the pusher."""
    shown = "".join(c if c.isprintable() else "?" for c in text[: size + 1])
    return shown if len(shown) <= size else shown[: size - 3] + "..."
