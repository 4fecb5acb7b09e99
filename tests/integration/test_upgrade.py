"""Upgrades keep data: a data dir written by the last pushdock without schema versions is migrated on open,
and every app, release, key, token and setting in it is read back by the current code.

tests/fixtures/datadir-v1.tar.gz was made by tests/fixtures/make_datadir_v1.py running the code of commit
83976fc (the commit before schema versions; `git archive 83976fc` selected with PYTHONPATH): a real `serve`,
a real `git push` of tests/apps/e2e-web (app `web`, releases v1 and v2), `apps:create api`, config, domains,
checks, webhook secret and repo, deploy branch, `apps:lock`, an admin and a deployer SSH key, an admin and a
deployer token; then serve, nginx and the app's containers and images were stopped and removed, and the data
dir tarred without logs. tokens.json in the tarball holds the two tokens in clear (only their digests are in
the data dir). The tests run the current code as the host CLI does (`python -m pushdock.cli`); no Docker.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from pushdock.context import Context
from pushdock.migrations import SCHEMA_VERSION, ensure_current
from pushdock.settings import Settings
from pushdock.state import State
from tests.harness import Server

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "datadir-v1.tar.gz"


def files(root: Path, *, skip: tuple[str, ...] = ("events.log", "logs", "VERSION", "locks")) -> dict[str, str]:
    """path -> mode and content digest of everything under root (not the files every command writes)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if rel.parts[0] in skip:
            continue
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        # migration 2 makes the top level private (0700/0600): what is below keeps its mode
        mode = "" if len(rel.parts) == 1 else stat.filemode(st.st_mode)
        out[str(rel)] = f"{mode} {digest}"
    return out


def everything(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path with mode, mtime and content: what 'touching nothing' means."""
    out = {".": (root.stat().st_mode, root.stat().st_mtime_ns, "")}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns,
                                         hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
    return out


@pytest.fixture
def old(tmp_path: Path) -> Server:
    """The server harness (its host CLI only: serve is not started) over the extracted v1 data dir."""
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    os.chmod(tmp_path / "data", 0o755)  # as the old code left it (the umask's)
    return Server(tmp_path)


def cli_json(srv: Server, *args: str) -> object:
    return json.loads(srv.cli(*args, "--format", "json").stdout)


def test_the_new_code_reads_everything_the_old_code_wrote(old: Server) -> None:
    data = old.data
    assert not (data / "VERSION").exists()
    before = files(data)
    web_main = subprocess.run(["git", "--git-dir", str(data / "repos" / "web.git"), "rev-parse", "main"],
                              capture_output=True, text=True, check=True).stdout

    assert cli_json(old, "apps:list") == [{"name": "api"}, {"name": "web"}]
    assert (data / "VERSION").read_text() == f"{SCHEMA_VERSION}\n"
    assert stat.S_IMODE(data.stat().st_mode) == 0o711
    assert stat.S_IMODE((data / "repos").stat().st_mode) == 0o700
    assert cli_json(old, "config:export", "web") == {"GREETING": "hello", "SECRET_KEY": "s3cr3t-v1"}
    assert cli_json(old, "config:export", "api") == {"DATABASE_URL": "postgres://u:p@db/api"}
    releases = cli_json(old, "releases:list", "web")
    assert [(r["name"], r["status"], r["image"]) for r in releases] == [
        ("v2", "current", "pushdock/web:v1"), ("v1", "superseded", "pushdock/web:v1")]
    assert [(k["name"], k["role"], k["apps"]) for k in cli_json(old, "ssh-keys:list")] == [
        ("alice", "admin", []), ("bob", "deployer", ["web"])]
    assert [(t["name"], t["role"], t["apps"]) for t in cli_json(old, "tokens:list")] == [
        ("ci", "admin", []), ("deploy-web", "deployer", ["web"])]
    hooks = cli_json(old, "webhooks:report", "web")
    assert (hooks["secret"], hooks["repo"]) == ("set", "https://example.test/owner/web.git")
    assert cli_json(old, "domains:report", "web")["own domains"] == "www.example.test"
    assert cli_json(old, "checks:report", "web")["wait_to_retire"] == 7
    api = cli_json(old, "apps:report", "api")
    assert (api["deploy branch"], api["locked"]) == ("trunk", True)
    assert "git:set deploy-branch trunk" in cli_json(old, "git:report", "api")["config change"]

    # the tokens still authenticate, with their roles
    from pushdock.tokens import identity_for_token

    clear = json.loads((data.parent / "tokens.json").read_text())
    ctx = Context(settings=Settings(data_dir=data))
    who = {name: identity_for_token(ctx, token) for name, token in clear.items()}
    assert {n: (i.role, i.apps) for n, i in who.items() if i} == {"ci": ("admin", ()), "deploy-web": ("deployer", ("web",))}

    # nothing lost, nothing rewritten: every file of the old data dir is there with its content and mode
    # (the top level's modes aside: migration 2 made them private)
    assert files(data) == before
    assert subprocess.run(["git", "--git-dir", str(data / "repos" / "web.git"), "rev-parse", "main"],
                          capture_output=True, text=True, check=True).stdout == web_main
    steps = [e for e in ctx.state.read_events(1000) if e.get("action") == "data:migrate"]
    assert [e["version"] for e in steps] == list(range(1, SCHEMA_VERSION + 1))


def test_migrating_twice_changes_nothing(old: Server) -> None:
    data = old.data
    old.cli("apps:list")
    once = files(data, skip=("events.log", "logs"))
    old.cli("apps:list")  # current: no step runs
    assert files(data, skip=("events.log", "logs")) == once
    (data / "VERSION").unlink()  # as if it had never run: every step again, over its own result
    ensure_current(State(data))
    assert files(data, skip=("events.log", "logs")) == once
    assert cli_json(old, "config:export", "web") == {"GREETING": "hello", "SECRET_KEY": "s3cr3t-v1"}


@pytest.mark.parametrize("command", [["apps:list"], ["config:show", "web"], ["serve"]])
def test_a_newer_data_dir_is_refused_and_left_untouched(old: Server, command: list[str]) -> None:
    (old.data / "VERSION").write_text(f"{SCHEMA_VERSION + 1}\n")
    before = everything(old.data)
    cp = old.cli(*command, check=False, timeout=30)
    assert cp.returncode == 1
    assert cp.stderr.splitlines() == [
        f"error: the data dir {old.data} has schema version {SCHEMA_VERSION + 1}, newer than this pushdock knows "
        f"({SCHEMA_VERSION}): run the newer pushdock, or restore the backup made before the upgrade"]
    assert cp.stdout == ""
    assert everything(old.data) == before
