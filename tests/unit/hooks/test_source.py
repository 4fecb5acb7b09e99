"""The receive stage: Procfile parsing and exporting a pushed tree from a bare repo."""

from __future__ import annotations

import os
import subprocess

import pytest

from hooks.source import export_tree, parse_procfile
from pushdock.errors import UsageError


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
