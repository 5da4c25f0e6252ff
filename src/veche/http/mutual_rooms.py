"""Rooms shared with another user (spec: client-server API "Mutual Rooms")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.core.numbers import parse_count
from veche.errors import invalid_param, missing_param
from veche.http.base import CLIENT_V1, hs_of, json_response, requester
from veche.services.rooms import check_user_id

routes = web.RouteTableDef()
BATCH = 100


@routes.get(CLIENT_V1 + "/mutual_rooms")
async def mutual_rooms(request: web.Request) -> web.Response:
    req = await requester(request)
    other = request.query.get("user_id")
    if other is None:
        raise missing_param("user_id is required")
    check_user_id(other)
    if other == req.user_id:
        raise invalid_param("user_id is your own user ID")
    token = request.query.get("from")
    offset = 0 if token is None else parse_count(token)
    if offset is None:
        raise invalid_param("Invalid from token")
    shared = await hs_of(request).membership.shared_rooms(req.user_id, other)
    out: dict[str, Any] = {"joined": shared[offset:offset + BATCH], "count": len(shared)}
    if offset + BATCH < len(shared):
        out["next_batch"] = str(offset + BATCH)
    return json_response(out)
