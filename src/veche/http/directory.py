"""Room aliases and the published room directory (client-server API "Room aliases",
"Room discovery"; `/publicRooms?server=` asks another server), and the directory served to
other servers (server-server `/publicRooms`, only with federation on)."""

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
    query_bool,
    query_int,
    requester,
    require_not_suspended,
)
from veche.http.federation import FEDERATION_V1, federation_origin
from veche.services.directory import RoomsQuery

routes = web.RouteTableDef()
federation_routes = web.RouteTableDef()


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


def _limit(limit: int | None) -> int | None:
    """0 or none: no limit (the spec's default); at most 500 rooms a page."""
    return min(limit, 500) if limit else None


def _query_from_params(request: web.Request) -> RoomsQuery:
    network = request.query.get("third_party_instance_id")
    return RoomsQuery(limit=_limit(query_int(request, "limit", None)),
                      since=request.query.get("since"),
                      include_all_networks=query_bool(request, "include_all_networks"),
                      third_party_instance_id=network)


def _query_from_body(body: dict[str, Any]) -> RoomsQuery:
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
    all_networks = body.get("include_all_networks", False)
    if not isinstance(all_networks, bool):
        raise bad_json("include_all_networks must be a boolean")
    network = body.get("third_party_instance_id")
    if network is not None and not isinstance(network, str):
        raise bad_json("third_party_instance_id must be a string")
    return RoomsQuery(limit=_limit(limit), since=since, search=term or None,
                      room_types=room_types, include_all_networks=all_networks,
                      third_party_instance_id=network)


async def _public_rooms(request: web.Request, query: RoomsQuery,
                        user_id: str | None) -> web.Response:
    """This server's directory, or (`server` naming another) that server's, asked over
    federation for a signed-in user."""
    hs = hs_of(request)
    server = request.query.get("server")
    if server is None or server == hs.server_name:
        return json_response(await hs.directory.public_rooms(query))
    if user_id is None:
        user_id = (await requester(request)).user_id
    return json_response(await hs.directory.remote_public_rooms(server, query, user_id))


@routes.get(CLIENT_V3 + "/publicRooms")
async def get_public_rooms(request: web.Request) -> web.Response:
    return await _public_rooms(request, _query_from_params(request), None)


@routes.post(CLIENT_V3 + "/publicRooms")
async def post_public_rooms(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request, allow_empty=True)
    return await _public_rooms(request, _query_from_body(body), req.user_id)


# --- server-server API "Public Room Directory" -------------------------------------------

@federation_routes.get(FEDERATION_V1 + "/publicRooms")
async def federation_get_public_rooms(request: web.Request) -> web.Response:
    await federation_origin(request)
    return json_response(await hs_of(request).directory.public_rooms(
        _query_from_params(request), for_federation=True))


@federation_routes.post(FEDERATION_V1 + "/publicRooms")
async def federation_post_public_rooms(request: web.Request) -> web.Response:
    await federation_origin(request)
    body = await json_body(request, allow_empty=True)
    return json_response(await hs_of(request).directory.public_rooms(
        _query_from_body(body), for_federation=True))
