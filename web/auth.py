"""Who is calling the HTTP door: a bearer token (API) or a session made by signing in with one (dashboard).

Tokens are those of `tokens:add` (pushdock/tokens.py: only their SHA-256 is stored). A session is a random id
in an HttpOnly, SameSite=Strict cookie (Secure on HTTPS), a CSRF token per session, 12 hours and only while its
token exists. Sessions outlive a restart of `serve` (an upgrade signs nobody out): each is a file in
DATA_DIR/web/sessions named by the SHA-256 of its id (the files hold no cookie that would sign anyone in), with
the digest of the token signed in with, the CSRF token and the expiry; owner-only. Sign-in attempts are
rate-limited per client address.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from pushdock.state import Identity, atomic_write
from pushdock.tokens import identity_for_token

if TYPE_CHECKING:
    from pushdock.context import Context

UNKNOWN = "(unknown token)"  # who, in the events of a refused token: never a real token name
SESSION_COOKIE = "pushdock_session"
SESSION_SECONDS = 12 * 3600
SIGNIN_WINDOW = 60.0  # seconds
SIGNIN_ATTEMPTS = 10  # per client address and window


class ApiError(Exception):
    """An answer of the HTTP door other than 200: a status and a one-line message (JSON `{"error": ...}`)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def bearer_identity(ctx: Context, header: str | None) -> Identity:
    """The identity of `Authorization: Bearer TOKEN`; ApiError 401 (recorded as `denied`) if none or unknown."""
    from pushdock.context import Context  # noqa: PLC0415 -- start-up: loads only when this path runs

    scheme, _, token = (header or "").partition(" ")
    identity = identity_for_token(ctx, token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if identity is None:
        refused = Context(settings=ctx.settings, identity=Identity(name=UNKNOWN, role="deployer", door="http"),
                          bus_override=ctx.bus_override)
        refused.event("api", result="denied", reason="no token" if not header else "unknown token")
        raise ApiError(401, "a valid token is needed: Authorization: Bearer TOKEN (pushdock tokens:add)",
                       {"WWW-Authenticate": 'Bearer realm="pushdock"'})
    return identity


@dataclass
class Session:
    identity: Identity
    digest: str  # of the token signed in with: checked on every request, so `tokens:remove` ends the session
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    expires: float = field(default_factory=lambda: time.time() + SESSION_SECONDS)


class Sessions:
    """The signed-in dashboard users, kept in `store` (a directory) when given, and the sign-in rate limit."""

    def __init__(self, store: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._attempts: dict[str, list[float]] = {}
        self._store = store
        if store is not None:
            self._purge_files()

    def allow_attempt(self, address: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._attempts.get(address, []) if now - t < SIGNIN_WINDOW]
            if len(self._attempts) > 10_000:  # never grows without bound
                self._attempts.clear()
            allowed = len(recent) < SIGNIN_ATTEMPTS
            if allowed:
                recent.append(now)
            self._attempts[address] = recent
            return allowed

    def open(self, identity: Identity, digest: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(identity, digest)
        with self._lock:
            now = time.time()
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            self._sessions[sid] = session
        self._save(sid, session)
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
        if session is None:
            session = self._load(sid)
        if session is None or session.expires < time.time():
            return None
        return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)
        if sid and (path := self._file(sid)) is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- the files ------------------------------------------------------------------------------------------
    def _file(self, sid: str) -> Path | None:
        if self._store is None:
            return None
        return self._store / hashlib.sha256(sid.encode()).hexdigest()

    def _save(self, sid: str, session: Session) -> None:
        path = self._file(sid)
        if path is None:
            return
        record = {"name": session.identity.name, "digest": session.digest, "csrf": session.csrf,
                  "expires": session.expires}
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(path, json.dumps(record), mode=0o600)
        except OSError as e:  # the session works until serve restarts
            logger.warning("dashboard session not stored", error=e.strerror)

    def _load(self, sid: str) -> Session | None:
        """The stored session of `sid` (made by an earlier `serve`), now in memory too; None if none or expired.
        Its identity is a placeholder: the caller sets the token's current one (a role may have changed)."""
        path = self._file(sid)
        if path is None:
            return None
        try:
            record = json.loads(path.read_text())
            session = Session(Identity(name=str(record["name"]), role="deployer", door="http"),
                              str(record["digest"]), str(record["csrf"]), float(record["expires"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            logger.warning("dashboard session unreadable: signed out", error=str(e)[:100])
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        if session.expires < time.time():
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with self._lock:
            self._sessions[sid] = session
        return session

    def _purge_files(self) -> None:
        """Remove the files of expired sessions (at start: a session's file goes at sign-out or when read late)."""
        assert self._store is not None
        now = time.time()
        try:
            names = os.listdir(self._store)
        except FileNotFoundError:
            return
        for name in names:
            path = self._store / name
            try:
                if float(json.loads(path.read_text())["expires"]) >= now:
                    continue
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pass  # unreadable: of no use to anyone
            with contextlib.suppress(OSError):
                path.unlink()
