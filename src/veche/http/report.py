"""Reporting content (spec: client-server API "Reporting content")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import bad_json
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


async def _reason(request: web.Request) -> str | None:
    body = await json_body(request, allow_empty=True)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_json("reason must be a string")
    return reason


@routes.post(CLIENT_V3 + "/rooms/{room_id}/report/{event_id}")
async def report_event(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    hs.ratelimiter.check("report", req.user_id)
    room_id, event_id = request.match_info["room_id"], request.match_info["event_id"]
    reason = await _reason(request)
    await hs.reports.report_event(req.user_id, room_id, event_id, reason)
    return json_response({})


@routes.post(CLIENT_V3 + "/rooms/{room_id}/report")
async def report_room(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    hs.ratelimiter.check("report", req.user_id)
    room_id = request.match_info["room_id"]
    reason = await _reason(request)
    await hs.reports.report_room(req.user_id, room_id, reason)
    return json_response({})


@routes.post(CLIENT_V3 + "/users/{user_id}/report")
async def report_user(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    hs.ratelimiter.check("report", req.user_id)
    user_id = request.match_info["user_id"]
    reason = await _reason(request)
    await hs.reports.report_user(req.user_id, user_id, reason)
    return json_response({})
