"""refs/meta/config with the real git client over git:// (no docker: the app here is never deployed, except
for a recorded release whose restart a failing pre-release script plugin refuses)."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from dulwich.repo import Repo

from gitserver import configref
from pushdock.apps import create_app
from pushdock.cli import dispatch
from pushdock.context import Context
from pushdock.state import Release

APP = "cfgapp"


@pytest.fixture
def app(ctx: Context) -> str:
    create_app(ctx, APP)  # post-create makes the first commit
    return APP


def run(ctx: Context, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = dispatch(list(argv), ctx, out, err)
    return rc, out.getvalue(), err.getvalue()


def config_ref(ctx: Context) -> bytes | None:
    repo = Repo(str(ctx.state.repo_path(APP)))
    try:
        return repo.refs.as_dict().get(b"refs/meta/config")
    finally:
        repo.close()


@pytest.fixture
def checkout(tmp_path: Path, daemon: str, git: Any, app: str) -> Path:
    """A work tree on the fetched refs/meta/config of the app."""
    work = tmp_path / "config"
    git("init", "-q", str(work), check=True)
    git("fetch", "-q", f"{daemon}/{app}", "refs/meta/config", cwd=work, check=True)
    git("checkout", "-q", "FETCH_HEAD", cwd=work, check=True)
    return work


def push_config(git: Any, daemon: str, work: Path, files: dict[str, str], *options: str) -> Any:
    for name, text in files.items():
        (work / name).write_text(text)
    git("add", "-A", cwd=work, check=True)
    git("commit", "-qm", "edit settings", "--allow-empty", cwd=work, check=True)
    return git("push", *options, f"{daemon}/{APP}", "HEAD:refs/meta/config", cwd=work)


def log(git: Any, daemon: str, tmp_path: Path) -> list[str]:
    work = tmp_path / "log"
    git("init", "-q", str(work), check=True)
    git("fetch", "-q", f"{daemon}/{APP}", "refs/meta/config", cwd=work, check=True)
    return git("log", "--format=%an|%s", "FETCH_HEAD", cwd=work, check=True).stdout.splitlines()


def test_commands_are_committed_with_their_author_and_no_secret_values(
    ctx: Context, app: str, daemon: str, git: Any, tmp_path: Path
) -> None:
    assert run(ctx, "config:set", APP, "A=1", "TOKEN=hunter2")[0] == 0
    assert run(ctx, "ps:scale", APP, "web=2")[0] == 0
    assert run(ctx, "config:unset", APP, "A")[0] == 0
    assert log(git, daemon, tmp_path) == [
        "tester|config:unset A", "tester|ps:scale web=2", "tester|config:set A TOKEN", f"tester|apps:create {APP}",
    ]
    files = configref.from_state(ctx.state, APP).files()
    assert files["env"] == b"# the app's whole environment (dotenv): edit, commit, push to refs/meta/config\n" \
                           b"TOKEN=hunter2\n"
    assert b"[scale]\nweb = 2\n" in files["pushdock.toml"]


def test_an_unchanged_state_makes_no_commit(ctx: Context, app: str) -> None:
    before = config_ref(ctx)
    assert configref.record(ctx, APP, "nothing changed") is None
    assert config_ref(ctx) == before
    assert configref.record(ctx, "nosuchapp", "x") is None


def test_a_valid_config_push_is_applied(ctx: Context, app: str, daemon: str, git: Any, checkout: Path) -> None:
    cp = push_config(git, daemon, checkout, {
        "env": 'A=1\nB="two words"\n',
        "pushdock.toml": 'deploy_branch = "prod"\ndomains = ["www.example.com"]\n[scale]\nweb = 3\n'
                         "[checks]\ndisabled = true\nwait_to_retire = 7\n"
                         '[builder]\nselected = "dockerfile"\ndockerfile_path = "ops/Dockerfile"\n',
    })
    assert cp.returncode == 0, cp.stderr
    assert "remote: -----> Applying refs/meta/config" in cp.stderr
    assert "env A B; scale web=3; deploy_branch; domains; checks; builder" in cp.stderr
    assert "remote: -----> Stored; the app is not deployed yet" in cp.stderr
    s = ctx.state
    assert s.get_env(APP) == {"A": "1", "B": "two words"}
    assert s.get_formation(APP) == {"web": 3}
    assert s.get_json("domains", APP, "list") == ["www.example.com"]
    assert (s.get("checks", APP, "disabled"), s.get("checks", APP, "wait-to-retire")) == ("1", "7")
    assert s.get("checks", APP, "skipped") is None
    assert s.get("builder", APP, "selected") == "dockerfile"
    assert s.get("builder-dockerfile", APP, "dockerfile-path") == "ops/Dockerfile"
    assert s.get("git", APP, "deploy-branch") == "prod"
    repo = Repo(str(s.repo_path(APP)))
    assert repo.refs.get_symrefs()[b"HEAD"] == b"refs/heads/prod"
    assert repo.refs[b"refs/meta/config"] == git.head(checkout).encode()
    repo.close()
    assert ctx.state.read_events()[-1]["ref"] == "refs/meta/config"


@pytest.mark.parametrize(("files", "reason"), [
    ({"pushdock.toml": "[scale\n"}, "pushdock.toml: Expected ']' at the end of a table declaration"),
    ({"pushdock.toml": "[checks]\nwait_to_retre = 3\n"}, "pushdock.toml: unknown key 'checks.wait_to_retre'"),
    ({"env": "A=1\nnot a line\n"}, "env line 2: expected KEY=VALUE"),
    ({"README": "hi\n"}, "unexpected file 'README': refs/meta/config holds only env and pushdock.toml"),
    ({"pushdock.toml": "domains = ['cfgapp.localhost']\n"}, "domains: cfgapp.localhost is a default domain of the app"),
    ({"pushdock.toml": "[builder]\nselected = 'nosuch'\n"}, "builder.selected: unknown builder 'nosuch'"),
    ({"pushdock.toml": "[logs]\nvector_sink = 'http://logs:80'\n"}, "logs.vector_sink: HTTP sinks are not supported"),
    ({"pushdock.toml": "[proxy]\nclient-max-body-size = '1x'\n"}, "proxy: client-max-body-size: '1x' is not a size"),
    ({"pushdock.toml": "[proxy]\naccess-log-path = '/etc/cron.d/x.log'\n"},
     "proxy: access-log-path: /etc/cron.d/x.log is not in an allowed folder"),
])
def test_a_bad_config_push_changes_nothing(
    ctx: Context, app: str, daemon: str, git: Any, checkout: Path, files: dict[str, str], reason: str
) -> None:
    run(ctx, "config:set", APP, "KEEP=1")
    git("pull", "-q", f"{daemon}/{APP}", "refs/meta/config", cwd=checkout, check=True)
    before, env = config_ref(ctx), ctx.state.get_env(APP)
    cp = push_config(git, daemon, checkout, files)
    assert cp.returncode != 0
    assert "! [remote rejected] HEAD -> refs/meta/config (" in cp.stderr
    assert reason in cp.stderr
    assert config_ref(ctx) == before
    assert ctx.state.get_env(APP) == env
    assert ctx.state.get_json("domains", APP, "list") is None


def test_a_missing_file_and_a_deletion_are_refused(
    ctx: Context, app: str, daemon: str, git: Any, checkout: Path
) -> None:
    os.unlink(checkout / "env")
    cp = push_config(git, daemon, checkout, {})
    assert "(env is missing (fetch refs/meta/config and edit it))" in cp.stderr
    cp = git("push", f"{daemon}/{APP}", ":refs/meta/config", cwd=checkout)
    assert "(refs/meta/config cannot be deleted)" in cp.stderr
    assert config_ref(ctx) is not None


def test_history_cannot_be_rewritten(ctx: Context, app: str, daemon: str, git: Any, checkout: Path) -> None:
    git("checkout", "-q", "--orphan", "other", cwd=checkout, check=True)
    cp = push_config(git, daemon, checkout, {"env": "", "pushdock.toml": ""}, "--force")
    assert "(refs/meta/config only moves forward: fetch it, commit on top, push again)" in cp.stderr


def test_a_stale_push_is_refused(ctx: Context, app: str, daemon: str, git: Any, checkout: Path) -> None:
    run(ctx, "config:set", APP, "MOVED=1")  # the ref moves on after the fetch
    cp = push_config(git, daemon, checkout, {"env": "A=1\n"})
    assert cp.returncode != 0
    assert "[rejected]" in cp.stderr and "fetch first" in cp.stderr
    assert ctx.state.get_env(APP) == {"MOVED": "1"}


def test_no_restart_stores_only(ctx: Context, app: str, daemon: str, git: Any, checkout: Path) -> None:
    cp = push_config(git, daemon, checkout, {"env": "A=1\n"}, "-o", "no-restart")
    assert cp.returncode == 0, cp.stderr
    assert "remote: -----> Stored; takes effect on the next deploy" in cp.stderr
    assert ctx.state.get_env(APP) == {"A": "1"}


def test_unknown_push_option_applies_nothing(ctx: Context, app: str, daemon: str, git: Any, checkout: Path) -> None:
    cp = push_config(git, daemon, checkout, {"env": "A=1\n"}, "-o", "restart-later")
    assert "(unknown push option 'restart-later')" in cp.stderr
    assert ctx.state.get_env(APP) == {}


def test_a_failed_restart_restores_every_setting(
    ctx: Context, app: str, daemon: str, git: Any, checkout: Path
) -> None:
    release = Release(app=APP, number=1, image="pushdock/none:v1", env={}, processes={"web": "serve"},
                      formation={"web": 1})
    ctx.state.save_release(release)
    ctx.state.promote_release(release)
    ctx.state.set_formation(APP, {"web": 1})
    hook = ctx.state.path("plugins", "fail", "pre-release")
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\necho 'no releases today' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    cp = push_config(git, daemon, checkout, {"env": "A=1\n", "pushdock.toml": 'domains = ["a.example.com"]\n'
                                                                               '[scale]\nweb = 1\n'})
    assert "(trigger pre-release of plugin fail failed: no releases today)" in cp.stderr
    assert ctx.state.get_env(APP) == {}
    assert ctx.state.get_json("domains", APP, "list") is None
    assert ctx.state.current_release(APP).number == 1
    cp = push_config(git, daemon, checkout, {"pushdock.toml": "[scale]\nworker = 1\n"})
    assert "(pushdock.toml: scale: unknown process type 'worker' (known: web))" in cp.stderr


def test_domains_of_other_apps_are_refused(ctx: Context, app: str, daemon: str, git: Any, checkout: Path) -> None:
    create_app(ctx, "other")
    ctx.state.set_json("domains", "other", "list", ["taken.example.com"])
    cp = push_config(git, daemon, checkout, {"pushdock.toml": 'domains = ["taken.example.com"]\n'})
    assert "(pushdock.toml: domains: taken.example.com is used by app other)" in cp.stderr
    cp = push_config(git, daemon, checkout, {"pushdock.toml": 'domains = ["other.localhost"]\n'})
    assert "(pushdock.toml: domains: other.localhost is used by app other)" in cp.stderr


def test_git_set_deploy_branch(ctx: Context, app: str, daemon: str, git: Any, tmp_path: Path) -> None:
    rc, out, _ = run(ctx, "git:set", APP, "deploy-branch", "release")
    assert (rc, out) == (0, f"-----> Deploy branch of {APP}: release\n")
    repo = Repo(str(ctx.state.repo_path(APP)))
    assert repo.refs.get_symrefs()[b"HEAD"] == b"refs/heads/release"
    repo.close()
    assert log(git, daemon, tmp_path)[0] == "tester|git:set deploy-branch release"
    assert b'deploy_branch = "release"' in configref.from_state(ctx.state, APP).files()["pushdock.toml"]
    rc, _, err = run(ctx, "git:set", APP, "deploy-branch", "a..b")
    assert (rc, err) == (2, "error: invalid branch name 'a..b'\n")
    rc, out, _ = run(ctx, "git:report", APP, "--format", "json")
    assert rc == 0 and '"deploy branch": "release"' in out and '"config change": "git:set deploy-branch release"' in out
    assert run(ctx, "git:set", APP, "deploy-branch")[1] == f"-----> Deploy branch of {APP}: (the first branch pushed)\n"
    assert ctx.state.get("git", APP, "deploy-branch") is None


def test_log_shipping_is_a_setting_in_the_ref(ctx: Context, app: str, daemon: str, git: Any, tmp_path: Path,
                                               checkout: Path) -> None:
    assert run(ctx, "logs:set", APP, "vector-sink", "syslog://127.0.0.1:5514") == (
        0, f"-----> Set {APP}'s vector-sink to syslog://127.0.0.1:5514\n-----> Stored; applies when the app starts\n",
        "")
    assert log(git, daemon, tmp_path)[0] == "tester|logs:set vector-sink set"
    toml = configref.from_state(ctx.state, APP).files()["pushdock.toml"]
    assert toml.endswith(b'[logs]\nvector_sink = "syslog://127.0.0.1:5514"\n')

    git("pull", "-q", f"{daemon}/{APP}", "refs/meta/config", cwd=checkout, check=True)
    text = (checkout / "pushdock.toml").read_text().replace("syslog://127.0.0.1:5514", "gelf+tcp://logs:12201")
    cp = push_config(git, daemon, checkout, {"pushdock.toml": text})
    assert cp.returncode == 0 and "logs" in cp.stderr, cp.stderr
    assert ctx.state.get("logs", APP, "vector-sink") == "gelf+tcp://logs:12201"


def test_proxy_tuning_by_config_push_and_the_deployers_limit(
    ctx: Context, app: str, daemon: str, git: Any, checkout: Path
) -> None:
    """`[proxy]` in pushdock.toml is what `proxy:set` stores; a deployer may change the safe keys of its app,
    not the log paths (files the proxy writes on the host)."""
    from pushdock.state import Identity

    logs = ctx.state.path("nginx", "logs")
    logs.mkdir(parents=True)
    ctx.identity = Identity(name="ci", role="deployer", apps=(APP,), door="ssh")
    cp = push_config(git, daemon, checkout, {"pushdock.toml": f"[proxy]\naccess-log-path = '{logs}/a.log'\n"})
    assert cp.returncode != 0
    assert "proxy: only an admin may set access-log-path (a file on the host)" in cp.stderr
    assert ctx.state.get_json("proxy", APP, "tuning") is None
    git("reset", "-q", "--hard", "HEAD~1", cwd=checkout, check=True)
    cp = push_config(git, daemon, checkout, {"pushdock.toml": "[proxy]\nclient-max-body-size = '10M'\nhsts = true\n"})
    assert cp.returncode == 0, cp.stderr
    assert ctx.state.get_json("proxy", APP, "tuning") == {"client-max-body-size": "10m", "hsts": "true"}
    assert not (ctx.state.path("nginx") / "nginx.pid").exists()  # never deployed: no route, no proxy started
    assert run(ctx, "proxy:set", APP, "hsts", "off") == (0, f"-----> hsts of {APP}: false\n", "")
    assert b'hsts = "false"' in configref.from_state(ctx.state, APP).files()["pushdock.toml"]
