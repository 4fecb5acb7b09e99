"""The one reader of pushed files on the host: inside the tree only, size-capped, never through a link out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pushdock import pushed
from pushdock.errors import UsageError


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "Procfile").write_text("web: run\n")
    (tmp_path / "outside").write_text("secret\n")
    return root


def test_links_inside_are_followed(tree: Path) -> None:
    os.symlink("sub/Procfile", tree / "Procfile")
    os.symlink("sub", tree / "dir")
    assert pushed.read_text(tree, "Procfile") == "web: run\n"
    assert pushed.read_text(tree, "dir/Procfile") == "web: run\n"
    assert pushed.read_text(tree, "missing") is None
    assert pushed.read_text(tree, "sub") is None  # a directory is no file
    os.symlink("nowhere", tree / "dangling")
    assert pushed.read_text(tree, "dangling") is None
    assert pushed.exists(tree, "dangling")


@pytest.mark.parametrize("target", ["../outside", "{outside}", "sub/../../outside", "/etc/hostname", "/dev/zero"])
def test_links_out_are_refused_unread(tree: Path, target: str) -> None:
    os.symlink(target.format(outside=tree.parent / "outside"), tree / "Procfile")
    with pytest.raises(UsageError, match="Procfile is a symlink out of the pushed tree"):
        pushed.read_bytes(tree, "Procfile")
    with pytest.raises(UsageError):
        pushed.is_file(tree, "Procfile")
    assert pushed.exists(tree, "Procfile")  # present (so it is not replaced), never read


def test_a_directory_linking_out_is_refused(tree: Path) -> None:
    os.symlink(tree.parent, tree / "up")
    with pytest.raises(UsageError):
        pushed.read_bytes(tree, "up/outside")
    with pytest.raises(UsageError):
        pushed.exists(tree, "up/outside")


def test_size_cap_and_bad_paths(tree: Path) -> None:
    (tree / "big").write_bytes(b"x" * 2048)
    with pytest.raises(UsageError, match="big is larger than 1 KiB"):
        pushed.read_bytes(tree, "big", limit=1024)
    for bad in ("", "/etc/passwd", "../outside", "a/../../outside"):
        with pytest.raises(UsageError):
            pushed.read_bytes(tree, bad)


def test_write_new_never_follows_or_overwrites(tree: Path) -> None:
    os.symlink(tree.parent / "created-outside", tree / ".buildpacks")
    with pytest.raises(FileExistsError):
        pushed.write_new(tree, ".buildpacks", "x")
    assert not (tree.parent / "created-outside").exists()
    pushed.write_new(tree, ".other", "y\n")
    assert (tree / ".other").read_text() == "y\n"


def test_excerpt_is_short_and_printable() -> None:
    assert pushed.excerpt("a\x1b[31mb\n" + "c" * 100) == "a?[31mb?" + "c" * 29 + "..."
    assert len(pushed.excerpt("z" * 41)) == 40
    assert pushed.excerpt("short") == "short"
