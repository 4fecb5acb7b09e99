"""Git over HTTP: smart HTTP (clone, fetch, push) at `/git/APP.git`, HTTP Basic auth by token.

dulwich.web does the protocol (pkt-lines, chunked bodies, gzip) with pushdock's own receive-pack handler,
so a push over HTTP takes the same path as one over SSH: app lock, validation, deploy, compare-and-swap,
`remote:` progress streamed as it happens (the web door's WSGI bridge passes every write on at once). Only the
three smart endpoints are served; dulwich's dumb-HTTP file routes are not. Roles are those of SSH keys: an admin
token may use every app, a deployer token the apps it lists; a first push creates the app.

Audit events (door `http`, who = the token's name, never the token): `git:push` per ref (gitserver/receive.py),
`git:fetch` per upload-pack exchange (clone, fetch) with its duration, and a `denied` event for an unknown
token (who `(unknown token)`) or an app the token may not use. A request without credentials is the HTTP
challenge every git client starts with, answered 401 and not recorded.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from loguru import logger

from pushdock.errors import Conflict, Forbidden, NotFound, PushdockError, internal_error
from pushdock.state import Identity

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from pushdock.context import Context

PREFIX = "/git/"
PATH = re.compile(r"^/git/(?P<repo>[a-z0-9-]+(?:\.git)?)(?P<endpoint>/info/refs|/git-upload-pack|/git-receive-pack)\Z")
SERVICES = ("git-upload-pack", "git-receive-pack")
ACTIONS = {"git-upload-pack": "git:fetch", "git-receive-pack": "git:push"}
REALM = 'Basic realm="pushdock"'
UNKNOWN = "(unknown token)"  # who, in the events of a refused token: not a valid token name, so never a real one


def _plain(start_response: StartResponse, status: str, message: str,
           extra: tuple[tuple[str, str], ...] = ()) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *extra])
    return [body]


def presented_token(header: str | None) -> str | None:
    """The token of an `Authorization: Basic ...` header: the password, or the user name if there is none."""
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return password or user or None


class SmartHttp:
    """The WSGI app mounted at /git/ on pushdock's HTTP door."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        match = PATH.match(environ.get("PATH_INFO", ""))
        if match is None:
            return _plain(start_response, "404 Not Found", "not a git repository path: use /git/APP.git")
        endpoint, method = match["endpoint"], environ["REQUEST_METHOD"]
        if endpoint == "/info/refs":
            service = parse_qs(environ.get("QUERY_STRING", "")).get("service", [""])[0]
            if method != "GET":
                return _plain(start_response, "405 Method Not Allowed", "use GET")
        else:
            service = endpoint[1:]
            if method != "POST":
                return _plain(start_response, "405 Method Not Allowed", "use POST")
        if service not in SERVICES:
            return _plain(start_response, "403 Forbidden", "only smart HTTP is served (git 1.6.6 or later)")
        started = time.time()
        token = presented_token(environ.get("HTTP_AUTHORIZATION"))
        if token is None:
            return _plain(start_response, "401 Unauthorized", "a token is needed (pushdock tokens:add)",
                          (("WWW-Authenticate", REALM),))
        identity = self._authenticate(token, environ)
        if identity is None:
            self._event(Identity(name=UNKNOWN, role="deployer", door="http"), match["repo"], service, environ,
                        started=started, result="denied", reason="unknown token")
            return _plain(start_response, "401 Unauthorized", "unknown token", (("WWW-Authenticate", REALM),))
        try:
            ctx, app = self._open(identity, match["repo"], service)
        except PushdockError as e:
            status = next((s for kind, s in ((Forbidden, "403 Forbidden"), (NotFound, "404 Not Found"))
                           if isinstance(e, kind)), "400 Bad Request")
            self._event(identity, match["repo"], service, environ, started=started,
                        result="denied" if isinstance(e, Forbidden) else "failed", reason=str(e))
            return _plain(start_response, status, str(e))
        environ["PATH_INFO"] = f"/{app}{endpoint}"
        return self._serve(ctx, app, service, environ, start_response, started=started)

    def _event(self, identity: Identity, repo: str, service: str, environ: WSGIEnvironment, *, started: float,
               **fields: str) -> None:
        """One audit event of this door; the app is named only if `repo` is a valid app name."""
        from gitserver.backend import app_from_path  # noqa: PLC0415 -- start-up: loads only when this path runs
        from pushdock.context import Context  # noqa: PLC0415 -- start-up: loads only when this path runs

        try:
            app: str | None = app_from_path(repo)
        except PushdockError:
            app = None
        ctx = Context(settings=self.ctx.settings, identity=identity, bus_override=self.ctx.bus)
        record(ctx, ACTIONS[service], app, service, environ, started=started, **fields)

    def _authenticate(self, token: str, environ: WSGIEnvironment) -> Identity | None:
        from pushdock.tokens import identity_for_token  # noqa: PLC0415 -- start-up: loads only when this path runs

        identity = identity_for_token(self.ctx, token)
        if identity is None:
            logger.info("http token refused", address=environ.get("REMOTE_ADDR", ""))
        return identity

    def _open(self, identity: Identity, repo: str, service: str) -> tuple[Context, str]:
        """The caller's context and the app, created by a first push; PushdockError if not allowed."""
        from gitserver.backend import app_from_path  # noqa: PLC0415 -- start-up: loads only when this path runs
        from pushdock.apps import authorize, create_app  # noqa: PLC0415 -- start-up: loads only when this path runs
        from pushdock.context import Context  # noqa: PLC0415 -- start-up: loads only when this path runs

        app = app_from_path(repo)
        ctx = Context(settings=self.ctx.settings, identity=identity, bus_override=self.ctx.bus)
        authorize(ctx, app)
        if service == "git-receive-pack" and not ctx.state.app_exists(app):
            try:
                create_app(ctx, app)
                logger.info("app created by first push", app=app, who=identity.name, door="http")
            except Conflict:
                pass  # a concurrent first push won the race
        ctx.state.require_app(app)
        return ctx, app

    def _serve(self, ctx: Context, app: str, service: str, environ: WSGIEnvironment,
               start_response: StartResponse, *, started: float) -> Iterator[bytes]:
        from dulwich.errors import GitProtocolError, HangupException  # noqa: PLC0415 -- start-up: dulwich loads when first used
        from dulwich.protocol import pkt_line  # noqa: PLC0415 -- start-up: dulwich loads when first used
        from dulwich.server import UploadPackHandler  # noqa: PLC0415 -- start-up: dulwich loads when first used
        from dulwich.web import make_wsgi_chain  # noqa: PLC0415 -- start-up: dulwich loads when first used

        from gitserver.backend import AppBackend  # noqa: PLC0415 -- start-up: loads only when this path runs
        from gitserver.receive import PushdockReceivePack  # noqa: PLC0415 -- start-up: loads only when this path runs

        handlers: dict[bytes, Callable[..., Any]] = {  # dulwich's parameter type (a dict: invariant)
            b"git-receive-pack": PushdockReceivePack, b"git-upload-pack": UploadPackHandler,
        }
        chain = make_wsgi_chain(AppBackend(ctx), handlers=handlers)
        # The exchange itself is an event: a fetch always, a push only if it broke off (receive.py records
        # every ref it was asked to move). The advertisement (GET info/refs) is part of the exchange after it.
        exchange = environ["REQUEST_METHOD"] == "POST"
        result, reason = "ok", ""
        # dulwich's handlers run while the response is iterated: keep the log context and catch errors there.
        with logger.contextualize(who=ctx.identity.name, door="http", app=app):
            try:
                yield from chain(environ, start_response)
            except GeneratorExit:  # the server closed the response early: the client went away
                result, reason = "failed", "the client went away"
                raise
            except PushdockError as e:  # a malformed request (protocol error): one line, in the protocol
                logger.info("git over http refused", service=service, error=str(e))
                result, reason = "failed", str(e)
                yield pkt_line(b"ERR " + str(e).encode("utf-8", "replace"))
            except (HangupException, GitProtocolError, OSError) as e:  # the client went away
                logger.info("git over http ended early", service=service, error=repr(e))
                result, reason = "failed", "the client went away"
            except Exception:
                result, reason = "failed", internal_error("git over http crashed", service=service)
                with contextlib.suppress(Exception):  # re-raises if the headers are out already
                    start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
                    yield f"{reason}\n".encode()
            finally:
                if exchange and (service == "git-upload-pack" or result != "ok"):
                    record(ctx, ACTIONS[service], app, service, environ, started=started, result=result,
                           **({"reason": reason} if reason else {}))


def record(ctx: Context, action: str, app: str | None, service: str, environ: WSGIEnvironment, *,
           started: float, **fields: str) -> None:
    """Append the audit event of one git-over-HTTP request (never its credentials); a full disk is logged."""
    try:
        ctx.event(action, app=app, started=started, command=f"{service} {app or '?'}",
                  address=str(environ.get("REMOTE_ADDR", "")), **fields)
    except OSError as e:
        logger.error("http git event not recorded", app=app, error=repr(e))
