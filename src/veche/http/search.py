"""Server-side search (spec: client-server API "Server Side Search": POST /search)."""

from __future__ import annotations

from aiohttp import web

from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.post(CLIENT_V3 + "/search")
async def search(request: web.Request) -> web.Response:
    req = await requester(request)
    hs_of(request).ratelimiter.check("search", req.user_id)
    body = await json_body(request)
    return json_response(await hs_of(request).search.search(
        req.user_id, body, request.query.get("next_batch")))
