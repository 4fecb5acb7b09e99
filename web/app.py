"""The ASGI app of the HTTP door: the plugins' routes and mounts in front (web/routes.py), then FastAPI:
`/healthz`, the JSON API (web/api.py, OpenAPI at /api/openapi.json) and the dashboard (web/dashboard.py).

Errors are JSON `{"error": ...}` with a status code everywhere but the dashboard's pages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pushdock import __version__
from web.auth import ApiError
from web.routes import PluginRoutes

if TYPE_CHECKING:
    from pushdock.context import Context
    from pushdock.httproutes import Mount, Route

Health = Callable[[], dict[str, Any]]


def make_app(ctx: Context, *, health: Health | None = None, routes: list[Route | Mount] | None = None) -> Any:
    """The door's ASGI app; `routes` replaces the plugins' (the `http-routes` trigger)."""
    from web import api, dashboard  # noqa: PLC0415 -- start-up: loads only when this path runs

    app = FastAPI(title="pushdock", version=__version__, openapi_url="/api/openapi.json", docs_url=None,
                  redoc_url=None, description="pushdock's JSON API: the commands of the SSH door, over HTTP, "
                  "with a bearer token from `tokens:add` (docs/api.md).")
    app.state.ctx = ctx

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        """200 once the doors are open; `health` adds what serve is still doing (apps being reconciled)."""
        return {"status": "ok", "version": __version__, **(health() if health else {})}

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> Any:
        return JSONResponse({"error": str(e.detail).lower()}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"bad input: {where}: {first.get('msg', 'invalid')}"[:300]}, status_code=400)

    app.include_router(api.router)
    dashboard.install(app)
    if routes is None:
        routes = [r for part in ctx.bus.call("http_routes", ctx=ctx) for r in (part or [])]
    return PluginRoutes(ctx, routes, app)
