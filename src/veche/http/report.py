"""Reporting content (spec: client-server API "Reporting content")."""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from veche.errors import bad_json, not_found
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester
from veche.storage import events as event_store
from veche.storage import presence as store

routes = web.RouteTableDef()


async def _reason(request: web.Request) -> str | None:
    body = await json_body(request, allow_empty=True)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_json("reason must be a string")
    return reason


async def _store(request: web.Request, reporter: str, room_id: str | None, event_id: str | None,
                 user_id: str | None, reason: str | None) -> web.Response:
    await hs_of(request).db.run(
        store.add_report, secrets.token_urlsafe(12), reporter, room_id, event_id, user_id,
        reason, int(time.time() * 1000),
    )
    return json_response({})


@routes.post(CLIENT_V3 + "/rooms/{room_id}/report/{event_id}")
async def report_event(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    hs.ratelimiter.check("report", req.user_id)
    room_id, event_id = request.match_info["room_id"], request.match_info["event_id"]
    reason = await _reason(request)
    membership = await hs.db.run(event_store.get_membership, room_id, req.user_id)
    pos = await hs.db.run(event_store.get_event_position, event_id)
    if membership is None or membership[0] != "join" or pos is None or pos[0] != room_id:
        raise not_found("The event was not found or you are not joined to the room.")
    return await _store(request, req.user_id, room_id, event_id, None, reason)


@routes.post(CLIENT_V3 + "/rooms/{room_id}/report")
async def report_room(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    hs.ratelimiter.check("report", req.user_id)
    room_id = request.match_info["room_id"]
    reason = await _reason(request)
    if await hs.db.run(event_store.get_room_version, room_id) is None:
        raise not_found("The room was not found.")
    return await _store(request, req.user_id, room_id, None, None, reason)


@routes.post(CLIENT_V3 + "/users/{user_id}/report")
async def report_user(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    hs.ratelimiter.check("report", req.user_id)
    user_id = request.match_info["user_id"]
    reason = await _reason(request)
    if not await hs.db.fetchval("SELECT 1 FROM users WHERE user_id = ?", user_id):
        raise not_found("The user was not found.")
    return await _store(request, req.user_id, None, None, user_id, reason)
