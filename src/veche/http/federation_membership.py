"""Server-server membership routes: make_join / send_join v2, make_leave / send_leave v2,
make_knock / send_knock, invite v2 (and v1, for room versions 1 and 2 only, which are not
spoken here) and /query/directory; send_join and send_leave v1 are gone from the spec.
Served only with [federation] enabled (a `federation_routes` table, like http/federation.py's)."""

from __future__ import annotations

from aiohttp import web

from veche.errors import missing_param
from veche.http.base import hs_of, json_body, json_response
from veche.http.federation import FEDERATION_V1, federation_origin

federation_routes = web.RouteTableDef()
FEDERATION_V2 = "/_matrix/federation/v2"


def _ids(request: web.Request, *names: str) -> list[str]:
    return [request.match_info[n] for n in names]


@federation_routes.get(FEDERATION_V1 + "/make_join/{roomId}/{userId}")
async def make_join(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id, user_id = _ids(request, "roomId", "userId")
    versions = request.query.getall("ver", [])
    return json_response(await hs_of(request).federation_membership.make_join(
        origin, room_id, user_id, versions))


@federation_routes.put(FEDERATION_V2 + "/send_join/{roomId}/{eventId}")
async def send_join(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id, event_id = _ids(request, "roomId", "eventId")
    body = await json_body(request)
    return json_response(await hs_of(request).federation_membership.send_join(
        origin, room_id, event_id, body))


@federation_routes.get(FEDERATION_V1 + "/make_leave/{roomId}/{userId}")
async def make_leave(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id, user_id = _ids(request, "roomId", "userId")
    return json_response(await hs_of(request).federation_membership.make_leave(
        origin, room_id, user_id))


@federation_routes.put(FEDERATION_V2 + "/send_leave/{roomId}/{eventId}")
async def send_leave(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id, event_id = _ids(request, "roomId", "eventId")
    body = await json_body(request)
    return json_response(await hs_of(request).federation_membership.send_leave(
        origin, room_id, event_id, body))


@federation_routes.get(FEDERATION_V1 + "/make_knock/{roomId}/{userId}")
async def make_knock(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id, user_id = _ids(request, "roomId", "userId")
    versions = request.query.getall("ver", [])
    if not versions:
        raise missing_param("Missing ver")
    return json_response(await hs_of(request).federation_membership.make_knock(
        origin, room_id, user_id, versions))


@federation_routes.put(FEDERATION_V1 + "/send_knock/{roomId}/{eventId}")
async def send_knock(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id, event_id = _ids(request, "roomId", "eventId")
    body = await json_body(request)
    return json_response(await hs_of(request).federation_membership.send_knock(
        origin, room_id, event_id, body))


@federation_routes.put(FEDERATION_V1 + "/invite/{roomId}/{eventId}")
async def invite_v1(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id, event_id = _ids(request, "roomId", "eventId")
    body = await json_body(request)
    return json_response(await hs_of(request).federation_membership.invite_v1(
        origin, room_id, event_id, body))


@federation_routes.put(FEDERATION_V2 + "/invite/{roomId}/{eventId}")
async def invite(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    room_id, event_id = _ids(request, "roomId", "eventId")
    body = await json_body(request)
    return json_response(await hs_of(request).federation_membership.invite(
        origin, room_id, event_id, body))


@federation_routes.get(FEDERATION_V1 + "/query/directory")
async def query_directory(request: web.Request) -> web.Response:
    await federation_origin(request)
    alias = request.query.get("room_alias")
    if not alias:
        raise missing_param("Missing room_alias")
    return json_response(await hs_of(request).federation_membership.query_directory(alias))
