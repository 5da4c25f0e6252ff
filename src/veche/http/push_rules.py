"""Push rules (spec: client-server API "Push Rules"). Only the default ruleset for now."""

from __future__ import annotations

from aiohttp import web

from veche.core.push_rules import default_ruleset
from veche.http.base import CLIENT_V3, json_response, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/pushrules/")
async def get_rules(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(default_ruleset(req.user_id))


@routes.get(CLIENT_V3 + "/pushrules/global/")
async def get_global(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(default_ruleset(req.user_id)["global"])
