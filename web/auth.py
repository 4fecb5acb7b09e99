"""Who is calling the HTTP door: a bearer token (API) or a session made by signing in with one (dashboard).

Tokens are those of `tokens:add` (pushdock/tokens.py: only their SHA-256 is stored). Sessions live in this
process only (a restart of `serve` signs everyone out): a random id in an HttpOnly, SameSite=Strict cookie
(Secure on HTTPS), a CSRF token per session, 12 hours and only while its token exists. Sign-in attempts
are rate-limited per client address.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pushdock.tokens import identity_for_token

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.state import Identity

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
    from pushdock.state import Identity  # noqa: PLC0415 -- start-up: loads only when this path runs

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
    """The signed-in dashboard users of this process, and the sign-in rate limit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._attempts: dict[str, list[float]] = {}

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
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._sessions.get(sid)
        if session is None or session.expires < time.time():
            return None
        return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)
