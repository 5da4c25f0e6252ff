"""Synapse's room admin API: list, details, members, state, block and delete rooms
(docs/admin_api/rooms.md of Synapse). Server admins only."""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError
from veche.http.admin import SYNAPSE_ADMIN, admin_requester, direction, paging
from veche.http.base import hs_of, json_body, json_response, query_bool

routes = web.RouteTableDef()

V1, V2 = SYNAPSE_ADMIN + "/v1", SYNAPSE_ADMIN + "/v2"


@routes.get(V1 + "/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    await admin_requester(request)
    start, limit = paging(request)
    return json_response(await hs_of(request).admin_rooms.list_rooms(
        start, limit, request.query.get("order_by", "name"), direction(request),
        request.query.get("search_term"), _optional_bool(request, "public_rooms"),
        _optional_bool(request, "empty_rooms")))


def _optional_bool(request: web.Request, name: str) -> bool | None:
    return None if name not in request.query else query_bool(request, name)


@routes.get(V1 + "/rooms/{room_id}")
async def room_details(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_rooms.room_details(
        request.match_info["room_id"]))


@routes.get(V1 + "/rooms/{room_id}/members")
async def members(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_rooms.members(request.match_info["room_id"]))


@routes.get(V1 + "/rooms/{room_id}/state")
async def state(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_rooms.state(
        request.match_info["room_id"], request.query.get("type")))


@routes.get(V1 + "/rooms/{room_id}/block")
async def get_block(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_rooms.block_status(
        request.match_info["room_id"]))


@routes.put(V1 + "/rooms/{room_id}/block")
async def put_block(request: web.Request) -> web.Response:
    req = await admin_requester(request)
    block = (await json_body(request)).get("block")
    if not isinstance(block, bool):
        raise MatrixError(400, "M_BAD_JSON", "block must be a boolean")
    await hs_of(request).admin_rooms.set_blocked(req.user_id, request.match_info["room_id"], block)
    return json_response({"block": block})


@routes.delete(V1 + "/rooms/{room_id}")
async def delete_room_v1(request: web.Request) -> web.Response:
    req = await admin_requester(request)
    body = await json_body(request, allow_empty=True)
    return json_response(await hs_of(request).admin_rooms.delete_room(
        req.user_id, request.match_info["room_id"], body))


@routes.delete(V2 + "/rooms/{room_id}")
async def delete_room_v2(request: web.Request) -> web.Response:
    req = await admin_requester(request)
    body = await json_body(request)  # Synapse: "The body must be at least {}"
    delete_id = await hs_of(request).admin_rooms.start_delete(
        req.user_id, request.match_info["room_id"], body)
    return json_response({"delete_id": delete_id})


@routes.get(V2 + "/rooms/{room_id}/delete_status")
async def delete_status_of_room(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(hs_of(request).admin_rooms.delete_statuses(request.match_info["room_id"]))


@routes.get(V2 + "/rooms/delete_status/{delete_id}")
async def delete_status(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(hs_of(request).admin_rooms.delete_status(request.match_info["delete_id"]))
