"""Git over HTTP: smart HTTP (clone, fetch, push) at `/git/APP.git`, HTTP Basic auth by token.

dulwich.web does the protocol (pkt-lines, chunked bodies, gzip) with pushdock's own receive-pack handler,
so a push over HTTP takes the same path as one over SSH: app lock, validation, deploy, compare-and-swap,
`remote:` progress streamed as it happens (the threaded WSGI server flushes every write). Only the three
smart endpoints are served; dulwich's dumb-HTTP file routes are not. Roles are those of SSH keys: an admin
token may use every app, a deployer token the apps it lists; a first push creates the app.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import sys
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from loguru import logger

from pushdock.errors import Conflict, Forbidden, NotFound, PushdockError

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from pushdock.context import Context
    from pushdock.state import Identity

PREFIX = "/git/"
PATH = re.compile(r"^/git/(?P<repo>[a-z0-9-]+(?:\.git)?)(?P<endpoint>/info/refs|/git-upload-pack|/git-receive-pack)\Z")
SERVICES = ("git-upload-pack", "git-receive-pack")
REALM = 'Basic realm="pushdock"'


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
        token = presented_token(environ.get("HTTP_AUTHORIZATION"))
        identity = None if token is None else self._authenticate(token, environ)
        if identity is None:
            why = "a token is needed (pushdock tokens:add)" if token is None else "unknown token"
            return _plain(start_response, "401 Unauthorized", why, (("WWW-Authenticate", REALM),))
        try:
            ctx, app = self._open(identity, match["repo"], service)
        except PushdockError as e:
            status = next((s for kind, s in ((Forbidden, "403 Forbidden"), (NotFound, "404 Not Found"))
                           if isinstance(e, kind)), "400 Bad Request")
            return _plain(start_response, status, str(e))
        environ["PATH_INFO"] = f"/{app}{endpoint}"
        return self._serve(ctx, app, service, environ, start_response)

    def _authenticate(self, token: str, environ: WSGIEnvironment) -> Identity | None:
        from gitserver.tokens import identity_for_token

        identity = identity_for_token(self.ctx, token)
        if identity is None:
            logger.info("http token refused", address=environ.get("REMOTE_ADDR", ""))
        return identity

    def _open(self, identity: Identity, repo: str, service: str) -> tuple[Context, str]:
        """The caller's context and the app, created by a first push; PushdockError if not allowed."""
        from gitserver.backend import app_from_path
        from pushdock.apps import authorize, create_app
        from pushdock.context import Context

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
               start_response: StartResponse) -> Iterator[bytes]:
        from dulwich.errors import GitProtocolError, HangupException
        from dulwich.server import UploadPackHandler
        from dulwich.web import make_wsgi_chain

        from gitserver.backend import AppBackend
        from gitserver.receive import PushdockReceivePack

        handlers = {b"git-receive-pack": PushdockReceivePack, b"git-upload-pack": UploadPackHandler}
        chain = make_wsgi_chain(AppBackend(ctx), handlers=handlers)  # type: ignore[arg-type]
        # dulwich's handlers run while the response is iterated: keep the log context and catch errors there.
        with logger.contextualize(who=ctx.identity.name, door="http", app=app):
            try:
                yield from chain(environ, start_response)
            except (HangupException, GitProtocolError, OSError) as e:  # the client went away
                logger.info("git over http ended early", service=service, error=repr(e))
            except Exception:
                error_id = uuid.uuid4().hex[:8]
                logger.exception("git over http crashed", service=service, error_id=error_id)
                with contextlib.suppress(Exception):  # re-raises if the headers are out already
                    start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
                    yield f"internal error {error_id}\n".encode()
