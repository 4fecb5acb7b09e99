"""The dashboard at `/`: server-rendered pages (Jinja2), signed in with a token (docs/dashboard.md).

Reads of many apps (the overview) come straight from the state, filtered by the caller's apps, so 200 apps are
one page view; an app's page and every action run the same commands as the API (web/commands.py), as the
session's identity, so the role rules and the audit are the SSH door's. Every state change is a POST carrying
the session's CSRF token. Pages carry a Content-Security-Policy without inline scripts or styles; the
script (static/dashboard.js) only follows live logs and asks before a rollback.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from pushdock.context import Context
from pushdock.errors import PushdockError
from pushdock.state import APP_NAME, Identity
from pushdock.tokens import digest_of, identity_for_digest, identity_for_token
from web import hoststats
from web.auth import SESSION_COOKIE, SESSION_SECONDS, UNKNOWN, Session, Sessions
from web.commands import run_command, stream_command

if TYPE_CHECKING:
    from fastapi import FastAPI
    from jinja2 import Environment

HERE = Path(__file__).parent
SIGNIN_COOKIE = "pushdock_signin"  # the sign-in form's CSRF token (double submit): no session exists yet
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
RECENT_EVENTS = 100
MAX_FORM = 8192  # bytes

router = APIRouter(include_in_schema=False)


@functools.cache
def _templates() -> Environment:
    """The page templates, built at the first page: serve's memory stays without jinja2 until someone looks."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape  # noqa: PLC0415 -- memory: as above

    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t))) if t else ""
    env.filters["size"] = hoststats.size
    return env


def install(app: FastAPI) -> None:
    app.state.sessions = Sessions(_ctx_of(app).state.path("web", "sessions"))
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


# -- plumbing ------------------------------------------------------------------------------------------------
def _ctx_of(app: FastAPI) -> Context:
    ctx: Context = app.state.ctx
    return ctx


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def _session(request: Request) -> Session | None:
    """The signed-in session, as long as its token still exists (and with the token's current role and apps)."""
    sid = request.cookies.get(SESSION_COOKIE)
    session = _sessions(request).get(sid)
    if session is None:
        return None
    current = identity_for_digest(_ctx(request), session.digest)
    if current is None:
        _sessions(request).close(sid)
        return None
    session.identity = current
    return session


def _as(request: Request, who: Identity) -> Context:
    ctx = _ctx(request)
    return Context(settings=ctx.settings, identity=who, bus_override=ctx.bus)  # the door's plugins, loaded once


def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(_templates().get_template(name).render(**values), status_code=status, headers=HEADERS)


def _signin_redirect() -> RedirectResponse:
    return RedirectResponse("/signin", status_code=303, headers=HEADERS)


def _back(path: str, message: str, *, error: bool = False) -> RedirectResponse:
    """Back to `path` with a one-line message (shown once, escaped by the template)."""
    flag = "error" if error else "note"
    return RedirectResponse(f"{path}?{flag}={quote(message[:300])}", status_code=303, headers=HEADERS)


def _csrf_ok(session: Session, sent: str) -> bool:
    return hmac.compare_digest(session.csrf.encode(), sent.encode())


async def _form(request: Request) -> dict[str, str]:
    """The fields of a small urlencoded form (the dashboard's forms carry a token and a few words)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}


def _flash(request: Request) -> dict[str, Any]:
    return {k: request.query_params[k][:300] for k in ("note", "error") if k in request.query_params}


# -- sign in and out -----------------------------------------------------------------------------------------
@router.get("/signin")
def signin_form(request: Request) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = page("signin.html", csrf=nonce, **_flash(request))
    response.set_cookie(SIGNIN_COOKIE, nonce, httponly=True, samesite="strict", path="/signin",
                        secure=request.url.scheme == "https", max_age=3600)
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    fields = await _form(request)
    token, csrf = fields.get("token", ""), fields.get("csrf", "")
    ctx = _ctx(request)
    address = request.client.host if request.client else "?"
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf.encode()):
        return page("signin.html", 403, error="the form expired: try again", csrf=cookie)
    if not _sessions(request).allow_attempt(address):
        _as(request, Identity(name=UNKNOWN, role="deployer", door="http")).event(
            "dashboard:signin", result="denied", reason="rate limited", address=address)
        return page("signin.html", 429, error="too many attempts: wait a minute", csrf=cookie)
    who = identity_for_token(ctx, token.strip()) if token.strip() else None
    if who is None:
        _as(request, Identity(name=UNKNOWN, role="deployer", door="http")).event(
            "dashboard:signin", result="denied", reason="unknown token", address=address)
        return page("signin.html", 401, error="unknown token", csrf=cookie)
    sid, _ = _sessions(request).open(who, digest_of(token.strip()))
    _as(request, who).event("dashboard:signin", address=address)
    response = RedirectResponse("/", status_code=303, headers=HEADERS)
    response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        max_age=SESSION_SECONDS, path="/")
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    session = _session(request)
    if session is not None and _csrf_ok(session, (await _form(request)).get("csrf", "")):
        _sessions(request).close(request.cookies.get(SESSION_COOKIE))
        _as(request, session.identity).event("dashboard:signout")
    response = _signin_redirect()
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- pages ---------------------------------------------------------------------------------------------------
def overview(ctx: Context, who: Identity) -> list[dict[str, Any]]:
    """Every app the caller may use: status, current release, formation, domains (from the state), and the
    plugins' facts (`app-summary`: the certificate's expiry)."""
    rows = []
    for app in ctx.state.list_apps():
        if not who.may_use(app):
            continue
        current = ctx.state.current_release(app)
        stopped = bool(ctx.state.get("ps", app, "stopped"))
        status = "stopped" if stopped else ("running" if current else "not deployed")
        facts: dict[str, str] = {}
        for part in ctx.bus.call("app_summary", ctx=ctx, app=app):
            facts.update(part or {})
        rows.append({"name": app, "status": status, "release": current.name if current else "",
                     "deployed": current.created if current else None, "who": current.who if current else "",
                     "formation": current.formation if current else {}, "domains": ctx.domains(app),
                     "certificate": facts.get("certificate expires", "")})
    return rows


@router.get("/")
async def home(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _signin_redirect()
    ctx = _as(request, session.identity)
    apps = await asyncio.to_thread(overview, ctx, session.identity)
    return page("apps.html", apps=apps, session=session, **_flash(request))


@router.get("/apps/{app}")
async def app_page(request: Request, app: str) -> Response:
    session = _session(request)
    if session is None:
        return _signin_redirect()
    if not APP_NAME.match(app) or not session.identity.may_use(app):
        return page("error.html", 404, session=session, error=f"no app {app[:64]} you may see")
    settings, who = _ctx(request).settings, session.identity
    releases, processes, domains, certs = await asyncio.gather(
        run_command(settings, who, ["releases:list", app, "--format", "json"]),
        run_command(settings, who, ["ps:report", app, "--format", "json"]),
        run_command(settings, who, ["domains:report", app, "--format", "json"]),
        run_command(settings, who, ["certs:report", app, "--format", "json"]))
    if releases.status != 200:
        return page("error.html", releases.status, session=session, error=releases.error)
    return page("app.html", app=app, session=session, releases=releases.json() or [],
                processes=processes.json() if processes.status == 200 else None, processes_error=processes.error,
                domains=domains.json() if domains.status == 200 else {},
                certs=certs.json() if certs.status == 200 else {}, **_flash(request))


@router.post("/apps/{app}/rollback")
async def rollback(request: Request, app: str) -> Response:
    session = _session(request)
    if session is None:
        return _signin_redirect()
    fields = await _form(request)
    release = fields.get("release", "")
    if not _csrf_ok(session, fields.get("csrf", "")):
        _as(request, session.identity).event("releases:rollback", app=app if APP_NAME.match(app) else None,
                                             result="denied", reason="bad csrf token")
        return page("error.html", 403, session=session, error="the form expired: reload the page and try again")
    target = [release] if release else []
    outcome = await run_command(_ctx(request).settings, session.identity, ["releases:rollback", app, *target])
    where = f"/apps/{app}" if APP_NAME.match(app) else "/"
    if outcome.status != 200:
        return _back(where, outcome.error or "the rollback failed", error=True)
    return _back(where, f"rolled back to {release or 'the previous release'}")


@router.get("/events")
async def events_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _signin_redirect()
    outcome = await run_command(_ctx(request).settings, session.identity,
                                ["events", "-n", str(RECENT_EVENTS), "--format", "json"])
    rows = list(reversed(outcome.json() or [])) if outcome.status == 200 else []
    return page("events.html", session=session, events=rows, error=outcome.error if outcome.status != 200 else "")


@router.get("/host")
async def host_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _signin_redirect()
    ctx = _ctx(request)
    stats, usage = await asyncio.gather(asyncio.to_thread(hoststats.host, ctx),
                                        asyncio.to_thread(hoststats.containers, ctx, session.identity))
    return page("host.html", session=session, host=stats, containers=usage)


# -- live streams (Server-Sent Events) -------------------------------------------------------------------------
def _sse(lines: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(lines, media_type="text/event-stream",
                             headers={**HEADERS, "X-Accel-Buffering": "no"})


@router.get("/apps/{app}/deploy.sse")
async def deploy_stream(request: Request, app: str, build: str = "latest") -> Response:
    """The live log of the app's newest deploy (or build N), followed while it runs."""
    from web.api import follow_build, open_build  # noqa: PLC0415 -- start-up: loads only when this path runs

    session = _session(request)
    if session is None:
        return Response(status_code=401, headers=HEADERS)
    ctx = _ctx(request)
    try:
        record = await asyncio.to_thread(open_build, ctx, session.identity, app, build)
    except PushdockError as e:
        return _sse(_single("event: end\ndata: {\"result\": \"none\", \"release\": \"\"}\n\n", str(e)))
    return _sse(follow_build(ctx, app, record.id, request))


async def _single(end: str, message: str) -> AsyncIterator[str]:
    yield f"data: {message}\n\n"
    yield end


@router.get("/apps/{app}/logs.sse")
async def logs_stream(request: Request, app: str) -> Response:
    """The app's live logs (`logs APP -t -n 100`, as the caller)."""
    session = _session(request)
    if session is None:
        return Response(status_code=401, headers=HEADERS)
    settings = _ctx(request).settings

    async def lines() -> AsyncIterator[str]:
        async for line in stream_command(settings, session.identity, ["logs", app, "-t", "-n", "100"]):
            yield f"data: {line}\n\n"
            if await request.is_disconnected():
                return

    return _sse(lines())
