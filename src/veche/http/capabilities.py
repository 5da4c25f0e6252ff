"""Server capabilities (spec: client-server API "Capabilities negotiation")."""

from __future__ import annotations

from aiohttp import web

from veche.core.room_versions import KNOWN_ROOM_VERSIONS
from veche.http.base import CLIENT_V3, hs_of, json_response, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/capabilities")
async def capabilities(request: web.Request) -> web.Response:
    await requester(request)
    hs = hs_of(request)
    return json_response({"capabilities": {
        "m.change_password": {"enabled": True},
        "m.room_versions": {
            "default": hs.config.default_room_version,
            "available": {v: "stable" for v in KNOWN_ROOM_VERSIONS},
        },
        "m.set_displayname": {"enabled": True},
        "m.set_avatar_url": {"enabled": True},
        "m.3pid_changes": {"enabled": False},
        "m.get_login_token": {"enabled": False},
    }})
