"""ssh-keys services: validation of names and keys, conflicts, roles, and the identity of a connecting key."""

from __future__ import annotations

import pytest

from gitserver import keys
from gitserver.sshlib import asyncssh
from pushdock.context import Context
from pushdock.errors import Conflict, Forbidden, NotFound, UsageError
from pushdock.settings import Settings
from pushdock.state import Identity


def pub(kind: str = "ssh-ed25519", **kw: int) -> str:
    return asyncssh.generate_private_key(kind, comment="me@laptop", **kw).export_public_key().decode()


def test_add_list_remove(ctx: Context) -> None:
    text = pub()
    record = keys.add_key(ctx, "alice", text)
    assert record.role == "admin" and record.apps == ()
    assert record.key == " ".join(text.split()[:2])  # comment dropped
    assert record.fingerprint.startswith("SHA256:")
    keys.add_key(ctx, "bob@ci", pub(), role="deployer", apps=("web", "api"))
    assert [(k.name, k.role, k.apps) for k in keys.list_keys(ctx)] == [
        ("alice", "admin", ()), ("bob@ci", "deployer", ("web", "api"))]
    keys.remove_key(ctx, "alice")
    assert [k.name for k in keys.list_keys(ctx)] == ["bob@ci"]
    with pytest.raises(NotFound):
        keys.remove_key(ctx, "alice")


def test_identity_of_a_connecting_key(ctx: Context) -> None:
    private = asyncssh.generate_private_key("ssh-ed25519")
    keys.add_key(ctx, "ci", private.export_public_key().decode(), role="deployer", apps=("web",))
    public = asyncssh.import_public_key(private.export_public_key())
    assert keys.identity_for(ctx, public) == Identity(name="ci", role="deployer", apps=("web",), door="ssh")
    stranger = asyncssh.import_public_key(asyncssh.generate_private_key("ssh-ed25519").export_public_key())
    assert keys.identity_for(ctx, stranger) is None
    keys.remove_key(ctx, "ci")  # re-read on every attempt: removal takes effect at once
    assert keys.identity_for(ctx, public) is None


def test_duplicates_conflict(ctx: Context) -> None:
    text = pub()
    keys.add_key(ctx, "alice", text)
    with pytest.raises(Conflict, match="a key named alice already exists"):
        keys.add_key(ctx, "alice", pub())
    with pytest.raises(Conflict, match="already registered as alice"):
        keys.add_key(ctx, "alice2", text.replace("me@laptop", "other comment"))


@pytest.mark.parametrize("name", ["", "a b", "a/b", "x" * 65, "ünï", "a:b"])
def test_bad_names(ctx: Context, name: str) -> None:
    with pytest.raises(UsageError, match="invalid key name"):
        keys.add_key(ctx, name, pub())


@pytest.mark.parametrize(("text", "message"), [
    ("", "exactly one public key"),
    ("not a key", "not an OpenSSH public key"),
    ("ssh-ed25519 AAAA", "not an OpenSSH public key"),
])
def test_bad_keys(ctx: Context, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        keys.add_key(ctx, "k", text)


def test_two_keys_at_once_are_refused(ctx: Context) -> None:
    with pytest.raises(UsageError, match="exactly one public key"):
        keys.add_key(ctx, "k", pub() + pub())


def test_weak_key_types(ctx: Context) -> None:
    with pytest.raises(UsageError, match="at least 2048 bits"):
        keys.add_key(ctx, "k", pub("ssh-rsa", key_size=1024))
    keys.add_key(ctx, "k", pub("ssh-rsa", key_size=2048))
    dsa = pub("ssh-dss")
    with pytest.raises(UsageError, match="DSA keys are not accepted"):
        keys.add_key(ctx, "d", dsa)


def test_roles_and_apps(ctx: Context) -> None:
    with pytest.raises(UsageError, match="invalid role"):
        keys.add_key(ctx, "k", pub(), role="root")
    with pytest.raises(UsageError, match="--apps is for deployers"):
        keys.add_key(ctx, "k", pub(), role="admin", apps=("web",))
    with pytest.raises(UsageError, match="invalid app name"):
        keys.add_key(ctx, "k", pub(), role="deployer", apps=("Bad App",))


def test_only_admins_manage_keys(settings: Settings) -> None:
    deployer = Context(settings=settings, identity=Identity(name="ci", role="deployer", apps=("web",), door="ssh"))
    for call in (lambda: keys.add_key(deployer, "k", pub()), lambda: keys.list_keys(deployer),
                 lambda: keys.remove_key(deployer, "k")):
        with pytest.raises(Forbidden, match="admin only"):
            call()


def test_keys_file_is_private(ctx: Context) -> None:
    keys.add_key(ctx, "alice", pub())
    (path,) = (ctx.settings.data_dir / "data" / "ssh-keys").rglob("keys.json")
    assert path.stat().st_mode & 0o077 == 0
