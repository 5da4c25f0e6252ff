"""Receipts and read markers (spec: client-server API "Receipts", "Fully read markers")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError, bad_json
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester
from veche.services.receipts import RECEIPT_TYPES

routes = web.RouteTableDef()


@routes.post(CLIENT_V3 + "/rooms/{room_id}/receipt/{receipt_type}/{event_id}")
async def receipt(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    room_id, rtype = request.match_info["room_id"], request.match_info["receipt_type"]
    event_id = request.match_info["event_id"]
    if rtype not in RECEIPT_TYPES:
        raise MatrixError(400, "M_INVALID_PARAM", f"Unknown receipt type {rtype}")
    body = await json_body(request, allow_empty=True)
    thread_id = body.get("thread_id")
    if thread_id is not None and (not isinstance(thread_id, str) or not thread_id):
        raise MatrixError(400, "M_INVALID_PARAM", "thread_id field must be a non-empty string")
    if thread_id is not None and rtype == "m.fully_read":
        raise MatrixError(400, "M_INVALID_PARAM", "m.fully_read receipts cannot be threaded")
    await hs.receipts.set_own_receipt(room_id, req.user_id, rtype, event_id, thread_id)
    return json_response({})


@routes.post(CLIENT_V3 + "/rooms/{room_id}/read_markers")
async def read_markers(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    room_id = request.match_info["room_id"]
    body = await json_body(request)
    for rtype in ("m.fully_read", "m.read", "m.read.private"):
        event_id = body.get(rtype)
        if event_id is None:
            continue
        if not isinstance(event_id, str):
            raise bad_json(f"{rtype} must be an event ID")
        await hs.receipts.set_own_receipt(room_id, req.user_id, rtype, event_id, None)
    return json_response({})
