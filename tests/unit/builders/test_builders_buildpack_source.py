"""Buildpack references: parsing (URL, shorthand, folder), credentials never shown, and git fetches with dulwich
from real local repositories (made with the real git client), cached by commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builders.buildpack_source import BuildpackRef, fetch_git, parse_buildpack, parse_lines, resolve
from pushdock.context import Context
from pushdock.errors import BuildFailed, UsageError
from pushdock.progress import Progress
from pushdock.state import Identity


@pytest.mark.parametrize(("text", "kind", "location", "ref"), [
    ("https://github.com/x/bp.git", "git", "https://github.com/x/bp.git", ""),
    ("https://github.com/x/bp.git#v1.2", "git", "https://github.com/x/bp.git", "v1.2"),
    ("ssh://git@host:22/x/bp.git#main", "git", "ssh://git@host:22/x/bp.git", "main"),
    ("git@github.com:x/bp.git", "git", "git@github.com:x/bp.git", ""),
    ("file:///srv/bp.git#0123abc", "git", "file:///srv/bp.git", "0123abc"),
    ("heroku/python", "git", "https://github.com/heroku/heroku-buildpack-python.git", ""),
    ("pushdock/static", "shipped", "static", ""),
    ("./buildpacks/mine", "folder", "buildpacks/mine", ""),
    ("./a/./b/", "folder", "a/b", ""),
    ("/srv/buildpacks/mine", "host", "/srv/buildpacks/mine", ""),
])
def test_parse(text: str, kind: str, location: str, ref: str) -> None:
    parsed = parse_buildpack(text)
    assert (parsed.kind, parsed.location, parsed.ref, parsed.text) == (kind, location, ref, text)


@pytest.mark.parametrize(("text", "message"), [
    ("python", "not a buildpack URL or folder: 'python'"),
    ("ftp://example.com/bp", "not a buildpack URL or folder: 'ftp://example.com/bp'"),
    ("../outside", "not a buildpack URL or folder: '../outside'"),
    ("./a/../../b", "buildpack folder './a/../../b' must be a folder inside the repository"),
    ("https://example.com/bp.tgz", "is an archive: give a git URL or a folder"),
    ("https:///nohost.git", "has no host"),
    ("https://example.com/bp.git#a;b", "has a bad #ref"),
    ("pushdock/nope", "no shipped buildpack 'pushdock/nope'"),
    ("", "not a buildpack URL or folder"),
    ("two words", "not a buildpack URL or folder"),
])
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_buildpack(text)
    assert message in e.value.message


def test_credentials_are_never_shown() -> None:
    ref = parse_buildpack("https://user:tok3n@example.com/bp.git#v1")
    assert ref.display == "https://***@example.com/bp.git#v1" and ref.location.startswith("https://user:tok3n@")
    with pytest.raises(UsageError) as e:
        parse_buildpack("https://user:tok3n@example.com/bp.tgz")
    assert "tok3n" not in e.value.message


def test_parse_lines_names_the_bad_line() -> None:
    text = "# comment\n\npushdock/python\n  https://example.com/bp.git  \nnodejs\n"
    with pytest.raises(BuildFailed, match=r"^\.buildpacks line 5: not a buildpack URL or folder: 'nodejs' \(give"):
        parse_lines(text, ".buildpacks")
    assert [r.location for r in parse_lines(text.replace("nodejs", ""), ".buildpacks")] == [
        "python", "https://example.com/bp.git"]


# -- folders ----------------------------------------------------------------------------------------
def make_buildpack(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    for script in ("detect", "compile", "release"):
        (root / "bin" / script).write_text("#!/bin/sh\necho x\n")
        (root / "bin" / script).chmod(0o755)
    return root


def test_resolve_folders(ctx: Context, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    make_buildpack(tree / "bp")
    assert resolve(ctx, parse_buildpack("./bp"), tree, Progress()) == (tree / "bp").resolve()
    with pytest.raises(BuildFailed, match="has no bin/compile"):
        resolve(ctx, parse_buildpack("./missing"), tree, Progress())
    (tree / "link").symlink_to(tmp_path)  # a link out of the tree is refused
    with pytest.raises(BuildFailed, match="leaves the repository"):
        resolve(ctx, parse_buildpack("./link"), tree, Progress())
    shipped = resolve(ctx, parse_buildpack("pushdock/python"), tree, Progress())
    assert (shipped / "bin" / "compile").is_file()


def test_host_paths_are_for_admins_or_the_pushers_own_apps(ctx: Context, tmp_path: Path) -> None:
    outside = make_buildpack(tmp_path / "outside")
    ctx.state.create_app("mine")
    mine = make_buildpack(ctx.state.repo_path("mine") / "bp")
    ctx.identity = Identity(name="dev", role="deployer", apps=("mine",))
    with pytest.raises(BuildFailed, match="only admins may use paths on the server outside their apps"):
        resolve(ctx, parse_buildpack(str(outside)), tmp_path, Progress())
    assert resolve(ctx, parse_buildpack(str(mine)), tmp_path, Progress()) == mine.resolve()
    ctx.identity = Identity(name="root", role="admin")
    assert resolve(ctx, parse_buildpack(str(outside)), tmp_path, Progress()) == outside.resolve()


# -- git URLs ---------------------------------------------------------------------------------------
def git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@x",
           "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A bare repo with a buildpack: main (v2), a `v1` annotated tag and a `old` branch at v1."""
    work = make_buildpack(tmp_path / "work")
    git("init", "-q", "-b", "main", cwd=work)
    (work / "VERSION").write_text("1\n")
    git("add", "-A", cwd=work)
    git("commit", "-qm", "v1", cwd=work)
    v1 = git("rev-parse", "HEAD", cwd=work)
    git("tag", "-a", "v1", "-m", "v1", cwd=work)
    git("branch", "old", cwd=work)
    (work / "VERSION").write_text("2\n")
    git("commit", "-qam", "v2", cwd=work)
    v2 = git("rev-parse", "HEAD", cwd=work)
    bare = tmp_path / "bp.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return bare, {"v1": v1, "v2": v2}


@pytest.mark.parametrize(("ref", "version"), [("", "2"), ("#main", "2"), ("#old", "1"), ("#v1", "1"),
                                              ("#refs/tags/v1", "1"), ("#V2", None), ("#nope", None)])
def test_fetch_refs(ctx: Context, remote, ref: str, version: str | None) -> None:
    bare, _ = remote
    parsed = parse_buildpack(f"file://{bare}{ref}")
    if version is None:
        with pytest.raises(BuildFailed, match="no branch, tag or commit"):
            fetch_git(ctx, parsed, Progress())
        return
    path = fetch_git(ctx, parsed, Progress())
    assert (path / "VERSION").read_text() == f"{version}\n"
    assert (path / "bin" / "compile").stat().st_mode & 0o111  # modes survive


def test_fetch_by_commit_and_cache(ctx: Context, remote) -> None:
    bare, commits = remote
    lines: list[str] = []
    first = fetch_git(ctx, parse_buildpack(f"file://{bare}#{commits['v1']}"), Progress(lines.append))
    assert first.name == commits["v1"] and (first / "VERSION").read_text() == "1\n"
    assert lines[0].startswith("-----> Fetching buildpack file://")
    lines.clear()
    again = fetch_git(ctx, parse_buildpack(f"file://{bare}#{commits['v1'][:8]}"), Progress(lines.append))
    assert again == first and lines == [f"-----> Using buildpack file://{bare}#{commits['v1'][:8]} at "
                                        f"{commits['v1'][:7]} (cached)"]
    tagged = fetch_git(ctx, parse_buildpack(f"file://{bare}#v1"), Progress())
    assert tagged == first  # the annotated tag peels to the same commit: one copy


def test_fetch_errors_are_one_line(ctx: Context, tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match=r"^cannot read buildpack 'file://.*/nope.git': "):
        fetch_git(ctx, parse_buildpack(f"file://{tmp_path}/nope.git"), Progress())


def test_file_urls_follow_the_host_path_rule(ctx: Context, remote) -> None:
    bare, _ = remote
    ctx.identity = Identity(name="dev", role="deployer", apps=("mine",))
    with pytest.raises(BuildFailed, match="only admins"):
        fetch_git(ctx, BuildpackRef("git", f"file://{bare}", text=f"file://{bare}"), Progress())
