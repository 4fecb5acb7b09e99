"""SSH keys: who may connect, as which role, to which apps (the `ssh-keys:*` services)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import rsa

from gitserver.sshlib import asyncssh
from pushdock.errors import Conflict, Forbidden, NotFound, UsageError
from pushdock.state import ROLES, Identity, SshKey, validate_app_name

if TYPE_CHECKING:
    from gitserver.sshlib import asyncssh
    from pushdock.context import Context

KEY_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_RSA_BITS = 2048


def _require_admin(ctx: Context) -> None:
    who = ctx.identity
    if who.role != "admin":
        raise Forbidden(f"{who.name} ({who.role}) may not manage ssh keys: admin only")


def key_id(key: asyncssh.SSHKey) -> str:
    """`type base64` of a public key: what we store and compare (no comment, no options)."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def parse_public_key(text: str) -> asyncssh.SSHKey:
    """The one OpenSSH public key in `text`; UsageError for anything else, DSA, or RSA under 2048 bits."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        raise UsageError(f"give exactly one public key on stdin (got {len(lines)} lines)")
    try:
        key = asyncssh.import_public_key(lines[0])
    except (asyncssh.KeyImportError, ValueError) as e:
        raise UsageError(f"not an OpenSSH public key: {e}") from None
    algorithm = key.get_algorithm()
    if algorithm == "ssh-dss":
        raise UsageError("DSA keys are not accepted: use an ed25519 key")
    if algorithm == "ssh-rsa":
        pyca = key.pyca_key
        if not isinstance(pyca, rsa.RSAPublicKey):  # asyncssh's ssh-rsa public keys always are
            raise UsageError("not an OpenSSH public key: unreadable RSA key")
        bits = pyca.key_size
        if bits < MIN_RSA_BITS:
            raise UsageError(f"RSA keys need at least {MIN_RSA_BITS} bits (this one has {bits})")
    return key


def add_key(ctx: Context, name: str, text: str, *, role: str = "admin", apps: tuple[str, ...] = ()) -> SshKey:
    """Register a public key under `name`; Conflict if the name or the key is already registered."""
    _require_admin(ctx)
    if not KEY_NAME.match(name):
        raise UsageError(f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    if role not in ROLES:
        raise UsageError(f"invalid role {role!r}: use {' or '.join(ROLES)}")
    apps = tuple(validate_app_name(a) for a in apps)
    if role == "admin" and apps:
        raise UsageError("--apps is for deployers: an admin may use every app")
    key = parse_public_key(text)
    record = SshKey(name=name, key=key_id(key), fingerprint=key.get_fingerprint("sha256"), role=role, apps=apps)
    with ctx.state.global_lock("ssh-keys"):
        keys = ctx.state.list_keys()
        for k in keys:
            if k.name == name:
                raise Conflict(f"a key named {name} already exists")
            if k.key == record.key:
                raise Conflict(f"this key is already registered as {k.name}")
        ctx.state.save_keys([*keys, record])
    ctx.event("ssh-keys:add", key=name, role=role, fingerprint=record.fingerprint)
    return record


def list_keys(ctx: Context) -> list[SshKey]:
    _require_admin(ctx)
    return sorted(ctx.state.list_keys(), key=lambda k: k.name)


def remove_key(ctx: Context, name: str) -> None:
    _require_admin(ctx)
    with ctx.state.global_lock("ssh-keys"):
        keys = ctx.state.list_keys()
        kept = [k for k in keys if k.name != name]
        if len(kept) == len(keys):
            raise NotFound(f"no key named {name}")
        ctx.state.save_keys(kept)
    ctx.event("ssh-keys:remove", key=name)


def identity_for(ctx: Context, key: asyncssh.SSHKey) -> Identity | None:
    """The identity of a connecting key (keys re-read on every attempt), or None if unknown."""
    wanted = key_id(key)
    for k in ctx.state.list_keys():
        if " ".join(k.key.split()[:2]) == wanted:
            return Identity(name=k.name, role=k.role, apps=k.apps, door="ssh")
    return None
