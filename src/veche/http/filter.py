"""Filters (spec: client-server API "Filtering")."""

from __future__ import annotations

from aiohttp import web

from veche.core.numbers import parse_count
from veche.errors import forbidden, not_found
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.post(CLIENT_V3 + "/user/{user_id}/filter")
async def create_filter(request: web.Request) -> web.Response:
    req = await requester(request)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("Cannot create filters for other users")
    body = await json_body(request)
    return json_response({"filter_id": await hs_of(request).filters.create(req.user_id, body)})


@routes.get(CLIENT_V3 + "/user/{user_id}/filter/{filter_id}")
async def get_filter(request: web.Request) -> web.Response:
    req = await requester(request)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("Cannot read other users' filters")
    filter_id = parse_count(request.match_info["filter_id"])
    if filter_id is None:
        raise not_found("Unknown filter")
    found = await hs_of(request).filters.get(req.user_id, filter_id)
    if found is None:
        raise not_found("Unknown filter")
    return json_response(found)
