"""The worker edge: who may run which git command on which app, and what the caller sees when not."""

from __future__ import annotations

import io
import json

import pytest

from gitserver.worker import FATAL, identity_from_env, run
from pushdock.context import Context
from pushdock.errors import PushdockError
from pushdock.settings import Settings
from pushdock.state import Identity


class Streams:
    def __init__(self, stdin: bytes = b"0000") -> None:
        self.stdin = io.BytesIO(stdin)
        self.raw_out = io.BytesIO()
        self.stdout = io.TextIOWrapper(self.raw_out, write_through=True)
        self.stderr = io.StringIO()

    def run(self, command: str, ctx: Context) -> int:
        return run(command, ctx, self.stdin, self.stdout, self.stderr)


def as_(settings: Settings, role: str, apps: tuple[str, ...] = ()) -> Context:
    return Context(settings=settings, identity=Identity(name="bob", role=role, apps=apps, door="ssh"))


@pytest.mark.parametrize("path", ["'../x'", "'A B'", "'" + "a" * 64 + "'", "'/etc/passwd'", "'x\ny'"])
def test_invalid_app_name_is_one_fatal_line(settings: Settings, path: str) -> None:
    io_ = Streams()
    assert io_.run(f"git-receive-pack {path}", as_(settings, "admin")) == FATAL
    assert io_.stderr.getvalue().startswith("fatal: invalid app name")
    assert io_.stderr.getvalue().count("\n") == 1
    assert io_.raw_out.getvalue() == b""
    assert not (settings.data_dir / "repos").exists()


def test_deployer_may_not_touch_other_apps(settings: Settings) -> None:
    io_ = Streams()
    assert io_.run("git-receive-pack '/other'", as_(settings, "deployer", ("mine",))) == FATAL
    assert io_.stderr.getvalue() == "fatal: bob (deployer) has no access to app other\n"
    assert not (settings.data_dir / "repos").exists()


def test_first_push_creates_the_app(settings: Settings) -> None:
    ctx = as_(settings, "deployer", ("mine",))
    io_ = Streams()  # the client sends a flush-pkt: nothing to push
    assert io_.run("git-receive-pack '/mine.git'", ctx) == 0, io_.stderr.getvalue()
    assert ctx.state.app_exists("mine")
    advertisement = io_.raw_out.getvalue()
    assert b"refs/meta/config" in advertisement  # post-create committed the initial settings
    assert b"push-options" in advertisement
    assert b"symref=HEAD:refs/heads/main" in advertisement


def test_upload_pack_needs_an_existing_app(settings: Settings) -> None:
    io_ = Streams()
    assert io_.run("git-upload-pack '/nosuch'", as_(settings, "admin")) == FATAL
    assert io_.stderr.getvalue() == "fatal: app nosuch does not exist\n"
    assert not (settings.data_dir / "repos").exists()


def test_upload_pack_for_a_deployer_of_the_app(settings: Settings) -> None:
    ctx = as_(settings, "deployer", ("mine",))
    ctx.state.create_app("mine")
    io_ = Streams()
    assert io_.run("git-upload-pack 'mine'", ctx) == 0, io_.stderr.getvalue()


def test_git_command_with_extra_arguments(settings: Settings) -> None:
    io_ = Streams()
    assert io_.run("git-receive-pack a b", as_(settings, "admin")) == FATAL
    assert io_.stderr.getvalue() == "fatal: usage: git-receive-pack APP\n"


def test_unparsable_command(settings: Settings) -> None:
    io_ = Streams()
    assert io_.run("apps:list 'unterminated", as_(settings, "admin")) == 2
    assert io_.stderr.getvalue().startswith("error: cannot parse the command")


def test_admin_commands_go_through_the_cli_registry(settings: Settings) -> None:
    io_ = Streams()
    assert io_.run("version", as_(settings, "admin")) == 0, io_.stderr.getvalue()
    assert "0.1.0" in io_.raw_out.getvalue().decode()


def test_ssh_keys_commands_are_admin_only(settings: Settings) -> None:
    io_ = Streams()
    assert io_.run("ssh-keys:list", as_(settings, "deployer", ("mine",))) != 0
    assert io_.stderr.getvalue() == "error: bob (deployer) may not manage ssh keys: admin only\n"


def test_serve_is_refused_over_ssh(settings: Settings) -> None:
    io_ = Streams()
    assert io_.run("serve", as_(settings, "admin")) != 0
    assert io_.stderr.getvalue() == "error: serve runs on the host only\n"


def test_identity_from_env() -> None:
    raw = json.dumps({"name": "bob", "role": "deployer", "apps": ["a", "b"], "door": "ssh"})
    assert identity_from_env(raw) == Identity(name="bob", role="deployer", apps=("a", "b"), door="ssh")
    with pytest.raises(PushdockError, match="no identity"):
        identity_from_env(None)
    with pytest.raises(PushdockError, match="malformed"):
        identity_from_env("{nope")
