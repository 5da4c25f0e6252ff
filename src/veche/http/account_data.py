"""Client config / account data (spec: client-server API "Client Config")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError, bad_json, forbidden, not_found
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()
# Types the server manages itself (spec: these are set through their own APIs).
SERVER_MANAGED = ("m.fully_read", "m.push_rules")


async def _target(request: web.Request) -> tuple[str, str, str]:
    req = await requester(request)
    user_id = request.match_info["user_id"]
    if user_id != req.user_id:
        raise forbidden("Cannot access other users' account data")
    return user_id, request.match_info.get("room_id", ""), request.match_info["type"]


@routes.put(CLIENT_V3 + "/user/{user_id}/account_data/{type}")
@routes.put(CLIENT_V3 + "/user/{user_id}/rooms/{room_id}/account_data/{type}")
async def put_account_data(request: web.Request) -> web.Response:
    user_id, room_id, data_type = await _target(request)
    if data_type in SERVER_MANAGED:
        raise MatrixError(405, "M_BAD_JSON", f"{data_type} cannot be set through account data")
    body = await json_body(request)
    await hs_of(request).account_data.set(user_id, room_id, data_type, body)
    return json_response({})


@routes.get(CLIENT_V3 + "/user/{user_id}/account_data/{type}")
@routes.get(CLIENT_V3 + "/user/{user_id}/rooms/{room_id}/account_data/{type}")
async def get_account_data(request: web.Request) -> web.Response:
    user_id, room_id, data_type = await _target(request)
    hs = hs_of(request)
    content = await hs.account_data.get(user_id, room_id, data_type)
    if content is None and data_type == "m.push_rules" and not room_id:
        content = await hs.push.get_ruleset(user_id)
    if content is None:
        raise not_found("Account data not found")
    return json_response(content)


# --- room tags (spec: "Room Tagging"; stored as m.tag room account data) --------------------
async def _tag_target(request: web.Request) -> tuple[str, str]:
    req = await requester(request)
    user_id = request.match_info["user_id"]
    if user_id != req.user_id:
        raise forbidden("Cannot access other users' tags")
    return user_id, request.match_info["room_id"]


@routes.get(CLIENT_V3 + "/user/{user_id}/rooms/{room_id}/tags")
async def get_tags(request: web.Request) -> web.Response:
    user_id, room_id = await _tag_target(request)
    content = await hs_of(request).account_data.get(user_id, room_id, "m.tag") or {}
    tags = content.get("tags")
    return json_response({"tags": tags if isinstance(tags, dict) else {}})


@routes.put(CLIENT_V3 + "/user/{user_id}/rooms/{room_id}/tags/{tag}")
async def put_tag(request: web.Request) -> web.Response:
    user_id, room_id = await _tag_target(request)
    tag = request.match_info["tag"]
    body = await json_body(request)
    order = body.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
        raise bad_json("order must be a number")
    if len(tag.encode()) > 255:
        raise bad_json("tag too long")
    await hs_of(request).account_data.update_tags(user_id, room_id, tag, body)
    return json_response({})


@routes.delete(CLIENT_V3 + "/user/{user_id}/rooms/{room_id}/tags/{tag}")
async def delete_tag(request: web.Request) -> web.Response:
    user_id, room_id = await _tag_target(request)
    await hs_of(request).account_data.update_tags(user_id, room_id, request.match_info["tag"], None)
    return json_response({})
