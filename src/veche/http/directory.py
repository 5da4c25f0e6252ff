"""Room aliases and the published room directory (client-server API "Room aliases",
"Room discovery")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.core.numbers import is_safe_int
from veche.errors import bad_json, invalid_param
from veche.http.base import (
    CLIENT_V3,
    hs_of,
    json_body,
    json_response,
    query_int,
    requester,
    require_not_suspended,
)

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/directory/room/{roomAlias}")
async def get_alias(request: web.Request) -> web.Response:
    return json_response(await hs_of(request).directory.resolve_alias(request.match_info["roomAlias"]))


@routes.put(CLIENT_V3 + "/directory/room/{roomAlias}")
async def put_alias(request: web.Request) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    body = await json_body(request)
    await hs_of(request).directory.create_alias(req.user_id, request.match_info["roomAlias"],
                                            body.get("room_id"))
    return json_response({})


@routes.delete(CLIENT_V3 + "/directory/room/{roomAlias}")
async def delete_alias(request: web.Request) -> web.Response:
    req = await requester(request)
    await hs_of(request).directory.delete_alias(req.user_id, request.match_info["roomAlias"])
    return json_response({})


@routes.get(CLIENT_V3 + "/rooms/{roomId}/aliases")
async def room_aliases(request: web.Request) -> web.Response:
    req = await requester(request)
    aliases = await hs_of(request).directory.room_aliases(request.match_info["roomId"], req.user_id)
    return json_response({"aliases": aliases})


@routes.get(CLIENT_V3 + "/directory/list/room/{roomId}")
async def get_visibility(request: web.Request) -> web.Response:
    visibility = await hs_of(request).directory.get_visibility(request.match_info["roomId"])
    return json_response({"visibility": visibility})


@routes.put(CLIENT_V3 + "/directory/list/room/{roomId}")
async def put_visibility(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    await hs_of(request).directory.set_visibility(
        req.user_id, request.match_info["roomId"], body.get("visibility", "public")
    )
    return json_response({})


def _check_server(server: Any, hs_name: str) -> None:
    if server is not None and server != hs_name:
        raise invalid_param("Only this server's directory is available")


@routes.get(CLIENT_V3 + "/publicRooms")
async def get_public_rooms(request: web.Request) -> web.Response:
    hs = hs_of(request)
    _check_server(request.query.get("server"), hs.server_name)
    limit = query_int(request, "limit", None, maximum=500)
    return json_response(await hs.directory.public_rooms(
        limit or None, request.query.get("since"), None
    ))


@routes.post(CLIENT_V3 + "/publicRooms")
async def post_public_rooms(request: web.Request) -> web.Response:
    await requester(request)
    hs = hs_of(request)
    _check_server(request.query.get("server"), hs.server_name)
    body = await json_body(request, allow_empty=True)
    limit = body.get("limit")
    if limit is not None and not is_safe_int(limit):
        raise bad_json("limit must be an integer")
    if limit is not None and limit < 0:
        raise invalid_param("limit must not be negative")
    since = body.get("since")
    if since is not None and not isinstance(since, str):
        raise bad_json("since must be a string")
    flt = body.get("filter") or {}
    if not isinstance(flt, dict):
        raise bad_json("filter must be an object")
    term = flt.get("generic_search_term")
    if term is not None and not isinstance(term, str):
        raise bad_json("filter.generic_search_term must be a string")
    room_types = flt.get("room_types")
    if room_types is not None and not isinstance(room_types, list):
        raise bad_json("filter.room_types must be a list")
    return json_response(await hs.directory.public_rooms(
        min(limit, 500) if limit else None, since, term, room_types
    ))
