"""The receive stage: Procfile parsing and exporting a pushed tree from a bare repo."""

from __future__ import annotations

import os
import subprocess

import pytest

from hooks.source import export_tree
from pushdock.errors import UsageError
from pushdock.procfile import parse_procfile


def test_procfile_parsing() -> None:
    text = "# comment\nweb: python3 app.py --port $PORT\n\nworker:   celery -A x\nrelease: ./migrate\n"
    assert parse_procfile(text) == {
        "web": "python3 app.py --port $PORT", "worker": "celery -A x", "release": "./migrate"}


@pytest.mark.parametrize("text", ["web python app.py", "web:", "we b: x", "web: a\nweb: b"])
def test_bad_procfile_lines(text: str) -> None:
    with pytest.raises(UsageError, match="Procfile"):
        parse_procfile(text)


def test_export_tree_keeps_modes_and_symlinks(tmp_path, git_repo) -> None:
    work = git_repo({"app.py": "print(1)\n", "sub/dir/data.txt": "x"})
    (work / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(work / "run.sh", 0o755)
    os.symlink("app.py", work / "link.py")
    sha = git_repo.commit(work, {}, "more")
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, env=git_repo.env)
    dest = tmp_path / "out"
    dest.mkdir()
    assert export_tree(bare, sha, dest) == 4
    assert (dest / "sub/dir/data.txt").read_text() == "x"
    assert os.access(dest / "run.sh", os.X_OK) and not os.access(dest / "app.py", os.X_OK)
    assert os.readlink(dest / "link.py") == "app.py"


def test_a_gitlink_is_never_dropped_silently(tmp_path, git_repo) -> None:
    """A submodule without a .gitmodules entry, or with a URL pushdock will not fetch, fails the export naming
    it (no network: both are refused before any fetch); `submodules=False` (builder:report) leaves it out."""
    from pushdock.errors import BuildFailed

    work = git_repo({"app.py": "print(1)\n"})
    env = git_repo.env
    lib = "1" * 40
    subprocess.run(["git", "-C", str(work), "update-index", "--add", "--cacheinfo", f"160000,{lib},vendor/lib"],
                   check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "gitlink"], check=True, env=env)
    sha = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, env=env, capture_output=True,
                         text=True).stdout.strip()
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True, env=env)
    with pytest.raises(BuildFailed, match=r"submodule vendor/lib: no entry in \.gitmodules"):
        export_tree(bare, sha, tmp_path / "a")
    assert export_tree(bare, sha, tmp_path / "b", submodules=False) == 1

    (work / ".gitmodules").write_text('[submodule "lib"]\n\tpath = vendor/lib\n\turl = /srv/other.git\n')
    subprocess.run(["git", "-C", str(work), "add", ".gitmodules"], check=True, env=env)  # not -A: keep the gitlink
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "gitmodules"], check=True, env=env)
    sha = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, env=env, capture_output=True,
                         text=True).stdout.strip()
    subprocess.run(["git", "-C", str(bare), "fetch", "-q", str(work), "main:main"], check=True, env=env)
    with pytest.raises(BuildFailed, match=r"submodule vendor/lib \(/srv/other\.git\): not an https"):
        export_tree(bare, sha, tmp_path / "c")
