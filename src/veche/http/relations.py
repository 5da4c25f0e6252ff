"""Relations and threads (client-server API "Relationships", "Threading")."""

from __future__ import annotations

from aiohttp import web

from veche.http.base import CLIENT_V1, hs_of, json_response, query_bool, query_int, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V1 + "/rooms/{roomId}/relations/{eventId}")
@routes.get(CLIENT_V1 + "/rooms/{roomId}/relations/{eventId}/{relType}")
@routes.get(CLIENT_V1 + "/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}")
async def relations(request: web.Request) -> web.Response:
    req = await requester(request)
    q = request.query
    limit = query_int(request, "limit", 5, minimum=1, maximum=1000)
    assert limit is not None
    body = await hs_of(request).relations.relations(
        request.match_info["roomId"], req.user_id, request.match_info["eventId"],
        request.match_info.get("relType"), request.match_info.get("eventType"),
        q.get("from"), q.get("to"), q.get("dir", "b"), limit, query_bool(request, "recurse"),
    )
    return json_response(body)


@routes.get(CLIENT_V1 + "/rooms/{roomId}/threads")
async def threads(request: web.Request) -> web.Response:
    req = await requester(request)
    limit = query_int(request, "limit", 10, minimum=1, maximum=1000)
    assert limit is not None
    body = await hs_of(request).relations.threads(
        request.match_info["roomId"], req.user_id, request.query.get("include", "all"), limit,
        request.query.get("from"),
    )
    return json_response(body)
