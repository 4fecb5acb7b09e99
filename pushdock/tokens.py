"""HTTP tokens: who may use the HTTP door (git over HTTP, the API, the dashboard), as which role, for which apps
(the `tokens:*` services; core, because the git server and the web door both check them).

A token is shown once, when it is made; only its SHA-256 is kept (tokens are 256 random bits, so a fast
hash is enough), in a 0600 file next to the SSH host key. Roles and app lists mean what they mean for SSH keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from pushdock.errors import Conflict, Forbidden, NotFound, UsageError
from pushdock.state import ROLES, Identity, atomic_write, validate_app_name

if TYPE_CHECKING:
    from pathlib import Path

    from pushdock.context import Context

PREFIX = "pdt_"
KEY_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")  # the names SSH keys may have (gitserver/keys.py)


@dataclass(frozen=True)
class Token:
    name: str
    digest: str  # sha256 hex of the token
    role: str = "admin"
    apps: tuple[str, ...] = ()
    created: float = field(default_factory=time.time)


def _path(ctx: Context) -> Path:
    return ctx.state.path("keys", "http-tokens.json")


def _load(ctx: Context) -> list[Token]:
    try:
        raw = json.loads(_path(ctx).read_text())
    except FileNotFoundError:
        return []
    return [Token(**{**t, "apps": tuple(t.get("apps", ()))}) for t in raw]


def _save(ctx: Context, tokens: list[Token]) -> None:
    atomic_write(_path(ctx), json.dumps([asdict(t) for t in tokens], indent=1), mode=0o600)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _require_admin(ctx: Context) -> None:
    who = ctx.identity
    if who.role != "admin":
        raise Forbidden(f"{who.name} ({who.role}) may not manage tokens: admin only")


def add_token(ctx: Context, name: str, *, role: str = "admin", apps: tuple[str, ...] = ()) -> tuple[Token, str]:
    """Make a token called `name`; returns the record and the token itself (shown once, never stored)."""
    _require_admin(ctx)
    if not KEY_NAME.match(name):
        raise UsageError(f"invalid token name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    if role not in ROLES:
        raise UsageError(f"invalid role {role!r}: use {' or '.join(ROLES)}")
    apps = tuple(validate_app_name(a) for a in apps)
    if role == "admin" and apps:
        raise UsageError("--apps is for deployers: an admin may use every app")
    secret = PREFIX + secrets.token_urlsafe(32)
    record = Token(name=name, digest=_digest(secret), role=role, apps=apps)
    with ctx.state.global_lock("http-tokens"):
        tokens = _load(ctx)
        if any(t.name == name for t in tokens):
            raise Conflict(f"a token named {name} already exists")
        _save(ctx, [*tokens, record])
    ctx.event("tokens:add", token=name, role=role)
    return record, secret


def list_tokens(ctx: Context) -> list[Token]:
    _require_admin(ctx)
    return sorted(_load(ctx), key=lambda t: t.name)


def remove_token(ctx: Context, name: str) -> None:
    _require_admin(ctx)
    with ctx.state.global_lock("http-tokens"):
        tokens = _load(ctx)
        kept = [t for t in tokens if t.name != name]
        if len(kept) == len(tokens):
            raise NotFound(f"no token named {name}")
        _save(ctx, kept)
    ctx.event("tokens:remove", token=name)


def identity_for_token(ctx: Context, secret: str) -> Identity | None:
    """The identity a presented token stands for (compared in constant time), or None."""
    return identity_for_digest(ctx, _digest(secret))


def digest_of(secret: str) -> str:
    """What is stored of a token: a session keeps this, never the token (see identity_for_digest)."""
    return _digest(secret)


def identity_for_digest(ctx: Context, digest: str) -> Identity | None:
    """The identity of the token whose SHA-256 is `digest`, if it still exists (a removed token's sessions end)."""
    found = None
    for t in _load(ctx):
        if hmac.compare_digest(t.digest, digest):
            found = Identity(name=t.name, role=t.role, apps=t.apps, door="http")
    return found
