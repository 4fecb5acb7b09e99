"""`buildpacks:*`, `builder-pack:*` and `builder:report` through the real command edge."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import hooks.plugin
from builders import plugin
from pushdock.bus import Bus
from pushdock.context import Context
from pushdock.state import Identity, Release

APP = "myapp"
BP1, BP2, BP3 = "https://example.com/one.git", "https://example.com/two.git#v2", "pushdock/static"


def listed(run) -> list[str]:
    return [r["buildpack"] for r in json.loads(run("buildpacks:list", APP, "--format", "json")[1])]


def test_add_set_remove_clear(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    assert run("buildpacks:add", APP, BP1) == (0, f"-----> Buildpacks of {APP}: {BP1}\n", "")
    assert run("buildpacks:add", APP, BP2)[0] == 0
    assert run("buildpacks:add", "--index", "1", APP, BP3)[0] == 0
    assert listed(run) == [BP3, BP1, BP2]
    assert run("buildpacks:list", APP)[1].splitlines()[1].split() == ["1", BP3]
    assert run("buildpacks:set", "--index", "2", APP, "./local")[0] == 0
    assert listed(run) == [BP3, "./local", BP2]
    assert run("buildpacks:remove", APP, BP3)[0] == 0
    assert run("buildpacks:remove", "--index", "2", APP)[0] == 0
    assert listed(run) == ["./local"]
    assert run("buildpacks:set", APP, BP1)[0] == 0
    assert listed(run) == [BP1]
    assert run("buildpacks:clear", APP) == (0, f"-----> Cleared the buildpacks of {APP}\n", "")
    assert listed(run) == []


def test_bad_input_changes_nothing(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    run("buildpacks:add", APP, BP1)
    for argv, err in [
        (("buildpacks:add", APP, "python"), "error: not a buildpack URL or folder: 'python' (give a git URL, ./folder "
                                            "or pushdock/NAME)\n"),
        (("buildpacks:add", APP, BP1), f"error: buildpack {BP1} is already in the list of {APP}\n"),
        (("buildpacks:add", "--index", "3", APP, BP2), "error: invalid --index 3: use 1 to 2\n"),
        (("buildpacks:remove", APP, BP2), f"error: buildpack {BP2} is not in the list of {APP}\n"),
        (("buildpacks:remove", APP), "error: give a buildpack URL or --index N\n"),
        (("buildpacks:remove", "--index", "5", APP), f"error: invalid --index 5: {APP} has 1 buildpack(s)\n"),
        (("buildpacks:set", APP, "https://example.com/x.tgz"),
         "error: buildpack 'https://example.com/x.tgz' is an archive: give a git URL or a folder\n"),
    ]:
        rc, out, got = run(*argv)
        assert (rc, got) == (2, err), argv
    assert listed(run) == [BP1]


def test_credentials_are_hidden_in_listings(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    rc, out, _ = run("buildpacks:add", APP, "https://me:tok3n@example.com/bp.git")
    assert rc == 0 and "tok3n" not in out
    assert listed(run) == ["https://***@example.com/bp.git"]
    assert "tok3n" not in run("builder:report", APP)[1]


def test_settings_changes_are_announced(ctx: Context, run) -> None:
    seen: list[tuple[str, str]] = []

    class Recorder:
        @staticmethod
        @hooks.plugin.hookimpl
        def post_settings_change(ctx: Context, app: str, summary: str) -> None:
            seen.append((app, summary))

    ctx.bus_override = Bus(ctx.settings.data_dir / "plugins", extra_plugins=(plugin, Recorder), entry_points=False)
    ctx.state.create_app(APP)
    run("buildpacks:add", APP, "https://me:tok3n@example.com/bp.git")
    run("buildpacks:clear", APP)
    run("builder-pack:set", APP, "builder", "x/y:1")
    run("builder:set", APP, "selected", "pack")
    run("builder-dockerfile:set", APP, "build-args", "A,B")
    assert seen == [(APP, "buildpacks:add https://***@example.com/bp.git"), (APP, "buildpacks:clear"),
                    (APP, "builder-pack:set builder x/y:1"), (APP, "builder:set selected pack"),
                    (APP, "builder-dockerfile:set build-args A,B")]


def test_builder_pack_set_and_report(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    assert run("builder-pack:set", "--global", "builder", "g/builder:1") == (
        0, "-----> Set pack builder to g/builder:1 for every app\n", "")
    report = json.loads(run("builder-pack:report", APP, "--format", "json")[1])
    assert (report["builder"], report["builder from"]) == ("g/builder:1", "global")
    assert run("builder-pack:set", APP, "builder", "a/builder:2")[0] == 0
    assert json.loads(run("builder-pack:report", APP, "--format", "json")[1])["builder from"] == "app"
    assert run("builder-pack:set", APP, "builder") == (0, f"-----> Unset pack builder for {APP}\n", "")
    assert run("builder-pack:set", APP)[2] == "error: usage: builder-pack:set [--global|APP] builder [IMAGE]\n"
    deployer = Identity(name="dev", role="deployer", apps=(APP,), door="ssh")
    rc, _, err = run("builder-pack:set", "--global", "builder", "x/y", identity=deployer)
    assert rc == 13 and "admin only" in err
    assert run("builder-pack:set", APP, "builder", "mine/b:1", identity=deployer)[0] == 0


def commit_tree(repo: Path, files: dict[str, str]) -> str:
    """A commit in the app's bare repo, made with the real git client."""
    work = repo.parent / "work"
    env = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@x",
           "HOME": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    for name, text in files.items():
        (work / name).write_text(text)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "x"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(repo), "main"], check=True, env=env, capture_output=True)
    return subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, env=env, capture_output=True,
                          text=True).stdout.strip()


def test_builder_report_detects_on_the_last_deployed_commit(ctx: Context, run) -> None:
    ctx.state.create_app(APP)
    report = json.loads(run("builder:report", APP, "--format", "json")[1])
    assert report["builder detected"] == "" and report["builder reason"].startswith("not deployed yet")
    sha = commit_tree(ctx.state.repo_path(APP), {"Dockerfile": "FROM x\n", "requirements.txt": ""})
    ctx.state.promote_release(Release(app=APP, number=1, image="pushdock/myapp:v1", env={}, processes={},
                                      formation={}, sha=sha))
    report = json.loads(run("builder:report", APP, "--format", "json")[1])
    assert (report["builder detected"], report["builder reason"]) == ("dockerfile", "Dockerfile found")
    assert report["builder detected for"] == f"v1 ({sha[:7]})"
    run("buildpacks:add", APP, "pushdock/python")  # the list makes herokuish win over the Dockerfile
    report = json.loads(run("builder:report", APP, "--format", "json")[1])
    assert (report["builder detected"], report["builder reason"]) == ("herokuish", ".buildpacks found")
    assert report["builder buildpacks"] == "pushdock/python (from buildpacks:list)"
    run("buildpacks:clear", APP)
    run("builder:set", APP, "selected", "herokuish")
    report = json.loads(run("builder:report", APP, "--format", "json")[1])
    assert (report["builder selected"], report["builder detected"], report["builder reason"]) == (
        "herokuish", "herokuish", "selected with builder:set")
    assert report["builder buildpacks"] == "pushdock/python (detected)"
    text = run("builder:report", APP)[1]
    assert "builder reason:" in text and "selected with builder:set" in text


def test_builder_report_never_detects_through_a_link_out_of_the_tree(ctx: Context, run, tmp_path: Path) -> None:
    """The shipped bin/detect scripts run on this host for the report: a file linked from outside the tree
    is not looked at (here a host index.html would make pushdock/static detect the app)."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "index.html").write_text("on the host\n")
    ctx.state.create_app(APP)
    repo = ctx.state.repo_path(APP)
    work = repo.parent / "work"
    env = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@x",
           "HOME": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    (work / "index.html").symlink_to(host / "index.html")
    (work / "public").symlink_to(host)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "x"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(repo), "main"], check=True, env=env, capture_output=True)
    sha = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, env=env, capture_output=True,
                         text=True).stdout.strip()
    ctx.state.promote_release(Release(app=APP, number=1, image="pushdock/myapp:v1", env={}, processes={},
                                      formation={}, sha=sha))
    report = json.loads(run("builder:report", APP, "--format", "json")[1])
    assert report["builder detected"] == "herokuish"
    assert report["builder buildpacks"] == "none detects this app"
