"""Pushers (spec: client-server API "Push Notifications": GET /pushers, POST /pushers/set)."""

from __future__ import annotations

from aiohttp import web

from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/pushers")
async def get_pushers(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response({"pushers": await hs_of(request).pushers.get(req.user_id)})


@routes.post(CLIENT_V3 + "/pushers/set")
async def set_pusher(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    await hs_of(request).pushers.set(req.user_id, req.device_id, body)
    return json_response({})
