"""TURN credentials for calls (spec: client-server API "Voice over IP")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from aiohttp import web

from veche.errors import not_found
from veche.http.base import CLIENT_V3, hs_of, json_response, requester

routes = web.RouteTableDef()


def shared_secret_credentials(secret: str, user_id: str, lifetime_s: int) -> tuple[str, str]:
    """coturn's "TURN REST API" scheme: the username carries its expiry, the password is
    HMAC-SHA1 of it under the secret the TURN server shares."""
    username = f"{int(time.time()) + lifetime_s}:{user_id}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode()


@routes.get(CLIENT_V3 + "/voip/turnServer")
async def turn_server(request: web.Request) -> web.Response:
    req = await requester(request)
    turn = hs_of(request).config.turn
    if not turn.uris:
        raise not_found("No TURN server is configured on this homeserver.")
    if turn.shared_secret:
        username, password = shared_secret_credentials(
            turn.shared_secret, req.user_id, turn.user_lifetime_s)
    else:
        username, password = turn.username, turn.password
    return json_response({"username": username, "password": password, "uris": turn.uris,
                          "ttl": turn.user_lifetime_s})
