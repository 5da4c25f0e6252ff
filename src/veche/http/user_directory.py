"""User directory search (spec: client-server API "User directory")."""

from __future__ import annotations

from aiohttp import web

from veche.core.numbers import is_safe_int
from veche.errors import bad_json, missing_param
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.post(CLIENT_V3 + "/user_directory/search")
async def search(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    term = body.get("search_term")
    if term is None:
        raise missing_param("Missing search_term")
    if not isinstance(term, str):
        raise bad_json("search_term must be a string")
    limit = body.get("limit", 10)
    if not is_safe_int(limit) or limit < 0:
        raise bad_json("limit must be a non-negative integer")
    limit = min(limit, 100)
    results, limited = await hs_of(request).user_directory.search(req.user_id, term, limit)
    return json_response({"results": results, "limited": limited})
