"""User directory search (spec: client-server API "User directory")."""

from __future__ import annotations

from aiohttp import web

from veche.core.numbers import is_safe_int
from veche.errors import bad_json, missing_param
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester
from veche.storage import presence as store

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
    rows = await hs_of(request).db.run_read(store.search_users, req.user_id, term.strip(),
                                            limit + 1)
    results = []
    for user_id, displayname, avatar_url in rows[:limit]:
        entry = {"user_id": user_id}
        if displayname is not None:
            entry["display_name"] = displayname
        if avatar_url is not None:
            entry["avatar_url"] = avatar_url
        results.append(entry)
    return json_response({"results": results, "limited": len(rows) > limit})
