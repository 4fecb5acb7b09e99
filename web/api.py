"""The JSON API, `/api/v1`: a third door onto the one command registry (docs/api.md).

Every call authenticates a bearer token, then runs the command the SSH door would run, as the token's identity, in
a worker process (web/commands.py): the same role rules refuse it (403) and the same audit event records it, with
door `http`. Only the live log of a deploy (Server-Sent Events) is served here, after the same authorization.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from pushdock.context import Context  # (FastAPI reads the annotations at run time)
from pushdock.errors import PushdockError
from pushdock.httproutes import status_of
from pushdock.state import Identity
from web.auth import ApiError, bearer_identity
from web.commands import run_command

FOLLOW_INTERVAL = 0.3  # seconds between looks at a running deploy's log
APP = r"^[a-z0-9][a-z0-9-]{0,62}$"

router = APIRouter(prefix="/api/v1", tags=["api"])


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


@dataclass(frozen=True)
class Who:
    """The caller of one API request: its identity (door http) and the door's context."""

    identity: Identity
    ctx: Context


def caller(request: Request) -> Who:
    ctx = _ctx(request)
    return Who(bearer_identity(ctx, request.headers.get("authorization")), ctx)


Caller = Annotated[Who, Depends(caller)]


class Error(BaseModel):
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error, "description": why} for code, why in (
        (400, "bad input"), (401, "no token, or an unknown one"), (403, "the token's role does not allow it"),
        (404, "no such app, release or service"), (409, "a conflict: name taken, app locked"))}


async def _run(who: Who, *argv: str, raw: bool = False) -> Any:
    outcome = await run_command(who.ctx.settings, who.identity, list(argv))
    if outcome.status != 200:
        return JSONResponse({"error": outcome.error or "the command failed"}, status_code=outcome.status)
    if raw:
        return {"output": outcome.out}
    return outcome.json()


# -- apps --------------------------------------------------------------------------------------------------
class NewApp(BaseModel):
    name: str = Field(pattern=APP)


@router.get("/apps", responses=ERRORS, summary="The apps the token may use (apps:list)")
async def list_apps(who: Caller) -> Any:
    return await _run(who, "apps:list", "--format", "json")


@router.post("/apps", responses=ERRORS, status_code=200, summary="Create an app (apps:create; admin)")
async def create_app(body: NewApp, who: Caller) -> Any:
    answer = await _run(who, "apps:create", body.name, raw=True)
    return answer if isinstance(answer, JSONResponse) else {"name": body.name, "created": True}


@router.get("/apps/{app}", responses=ERRORS, summary="An app's report (apps:report)")
async def report_app(app: str, who: Caller) -> Any:
    return await _run(who, "apps:report", app, "--format", "json")


@router.delete("/apps/{app}", responses=ERRORS, summary="Destroy an app (apps:destroy --force; admin)")
async def destroy_app(app: str, who: Caller) -> Any:
    answer = await _run(who, "apps:destroy", app, "--force", raw=True)
    return answer if isinstance(answer, JSONResponse) else {"name": app, "destroyed": True}


# -- releases ----------------------------------------------------------------------------------------------
class Rollback(BaseModel):
    release: str | None = Field(default=None, pattern=r"^v?[0-9]{1,9}$", description="default: the previous one")


@router.get("/apps/{app}/releases", responses=ERRORS, summary="An app's releases (releases:list)")
async def list_releases(app: str, who: Caller) -> Any:
    return await _run(who, "releases:list", app, "--format", "json")


@router.post("/apps/{app}/rollback", responses=ERRORS, summary="Roll back to a release (releases:rollback)")
async def rollback(app: str, who: Caller, body: Rollback | None = None) -> Any:
    target = [body.release] if body and body.release else []
    return await _run(who, "releases:rollback", app, *target, raw=True)


# -- processes ---------------------------------------------------------------------------------------------
class Scale(BaseModel):
    formation: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,30}$")], Annotated[int, Field(ge=0, le=100)]]


@router.get("/apps/{app}/processes", responses=ERRORS, summary="An app's containers (ps:report)")
async def processes(app: str, who: Caller) -> Any:
    return await _run(who, "ps:report", app, "--format", "json")


@router.post("/apps/{app}/scale", responses=ERRORS, summary="Scale process types (ps:scale)")
async def scale(app: str, body: Scale, who: Caller) -> Any:
    return await _run(who, "ps:scale", app, *(f"{k}={v}" for k, v in body.formation.items()), raw=True)


@router.post("/apps/{app}/restart", responses=ERRORS, summary="Restart an app (ps:restart)")
async def restart(app: str, who: Caller) -> Any:
    return await _run(who, "ps:restart", app, raw=True)


# -- config ------------------------------------------------------------------------------------------------
@router.get("/apps/{app}/config", responses=ERRORS,
            summary="Config keys (config:keys); values only for an admin who asks (config:show)")
async def config(app: str, who: Caller, values: bool = False) -> Any:
    if values:
        if who.identity.role != "admin":
            Context(settings=who.ctx.settings, identity=who.identity).event(
                "config:show", app=app, result="denied", reason="values are for admins")
            refusal = f"{who.identity.name} ({who.identity.role}) may not read config values: admin only"
            return JSONResponse({"error": refusal}, status_code=403)
        return await _run(who, "config:show", app, "--format", "json")
    keys = await _run(who, "config:keys", app, "--format", "json")
    return keys if isinstance(keys, JSONResponse) else {"keys": keys}


# -- domains -----------------------------------------------------------------------------------------------
class Domain(BaseModel):
    domain: str = Field(min_length=1, max_length=253)


@router.get("/apps/{app}/domains", responses=ERRORS, summary="An app's domains (domains:report)")
async def domains(app: str, who: Caller) -> Any:
    return await _run(who, "domains:report", app, "--format", "json")


@router.post("/apps/{app}/domains", responses=ERRORS, summary="Add a domain (domains:add)")
async def add_domain(app: str, body: Domain, who: Caller) -> Any:
    return await _run(who, "domains:add", app, body.domain, raw=True)


@router.delete("/apps/{app}/domains/{domain}", responses=ERRORS, summary="Remove a domain (domains:remove)")
async def remove_domain(app: str, domain: str, who: Caller) -> Any:
    return await _run(who, "domains:remove", app, domain, raw=True)


# -- services and backups ----------------------------------------------------------------------------------
@router.get("/services/{kind}", responses=ERRORS, summary="Services of a kind (postgres:list, redis:list)")
async def services(kind: str, who: Caller) -> Any:
    _kind(kind)
    return await _run(who, f"{kind}:list", "--format", "json")


@router.get("/services/{kind}/{name}", responses=ERRORS, summary="A service (postgres:info, redis:info)")
async def service_info(kind: str, name: str, who: Caller) -> Any:
    _kind(kind)
    return await _run(who, f"{kind}:info", name, "--format", "json")


@router.get("/services/postgres/{name}/backups", responses=ERRORS, summary="A database's backups (postgres:backups)")
async def backups(name: str, who: Caller) -> Any:
    return await _run(who, "postgres:backups", name, "--format", "json")


def _kind(kind: str) -> None:
    if kind not in ("postgres", "redis"):
        raise ApiError(404, f"no service kind {kind[:20]!r}: postgres or redis")


# -- events ------------------------------------------------------------------------------------------------
@router.get("/events", responses=ERRORS, summary="Recent audit events the token may see (events)")
async def events(who: Caller, n: Annotated[int, Query(ge=1, le=10_000)] = 50, app: str | None = None) -> Any:
    return await _run(who, "events", "-n", str(n), *(["--app", app] if app else []), "--format", "json")


# -- a deploy's live log -----------------------------------------------------------------------------------
@router.get("/apps/{app}/builds/{build}/log", responses=ERRORS,
            summary="A deploy's output as Server-Sent Events, followed while it runs (`latest`: the newest)",
            response_class=StreamingResponse)
async def build_log(app: str, build: str, request: Request, who: Caller) -> Any:
    ctx = _ctx(request)
    try:
        record = await asyncio.to_thread(open_build, ctx, who.identity, app, build)
    except PushdockError as e:
        return JSONResponse({"error": str(e)}, status_code=status_of(e))
    return StreamingResponse(follow_build(ctx, app, record.id, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def open_build(ctx: Context, who: Identity, app: str, build: str) -> Any:
    """The build record `build` (a number or `latest`) of `app`, once `who` may use it; an event either way."""
    from pushdock import builds  # noqa: PLC0415 -- start-up: loads only when this path runs
    from pushdock.apps import authorized_app  # noqa: PLC0415 -- start-up: loads only when this path runs
    from pushdock.context import Context  # noqa: PLC0415 -- start-up: loads only when this path runs

    as_caller = Context(settings=ctx.settings, identity=who, bus_override=ctx.bus_override)
    started = time.time()
    try:
        authorized_app(as_caller, app)
        if build == "latest":
            found = builds.list_builds(as_caller.state, app)
            if not found:
                from pushdock.errors import NotFound  # noqa: PLC0415 -- start-up: loads only when this path runs

                raise NotFound(f"{app} has no deploy yet")
            record = found[-1]
        else:
            record = builds.get_build(as_caller.state, app, build)
    except PushdockError as e:
        as_caller.event("builds:follow", app=app if ctx.state.app_exists(app) else None, started=started,
                        result="denied" if status_of(e) == 403 else "failed", reason=str(e))
        raise
    as_caller.event("builds:follow", app=app, started=started, build=record.id)
    return record


async def follow_build(ctx: Context, app: str, build_id: int, request: Request | None = None) -> AsyncIterator[str]:
    """`data:` lines of the build's output as it is written; `event: end` with its result once it is over."""
    from pushdock import builds  # noqa: PLC0415 -- start-up: loads only when this path runs

    path = ctx.state.build_log(app, build_id)
    position, pending = 0, ""
    while True:
        record = await asyncio.to_thread(builds.get_build, ctx.state, app, str(build_id))
        chunk = await asyncio.to_thread(_read_from, path, position)
        position += len(chunk)
        text = pending + chunk.decode(errors="replace")
        *lines, pending = text.split("\n")
        for line in lines:
            yield f"data: {line}\n\n"
        if record.result != builds.RUNNING and not chunk:
            if pending:
                yield f"data: {pending}\n\n"
            yield f"event: end\ndata: {json.dumps({'result': record.result, 'release': record.release})}\n\n"
            return
        if request is not None and await request.is_disconnected():
            return
        if not chunk:
            await asyncio.sleep(FOLLOW_INTERVAL)


def _read_from(path: Any, position: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(position)
            return f.read(1 << 20)
    except FileNotFoundError:
        return b""
