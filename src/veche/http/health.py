"""Health checks (not Matrix): `/health` answers while the process serves HTTP at all,
`/health/ready` only while the database answers and the server is not shutting down."""

from __future__ import annotations

from aiohttp import web

from veche.http.base import hs_of

routes = web.RouteTableDef()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    problem = await hs_of(request).health.not_ready_because()
    if problem is not None:
        return web.Response(status=503, text=f"not ready: {problem}")
    return web.Response(text="OK")
