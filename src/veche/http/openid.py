"""OpenID (spec: client-server API "OpenID": /user/{userId}/openid/request_token, and the
server-server API's /openid/userinfo that widgets and integration managers check it with).

The token proves who the user is to a third party and nothing more: it is not an access
token, and the third party learns only the user ID.
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from veche.errors import MatrixError, forbidden, missing_param
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester
from veche.services.auth import hash_token
from veche.storage import accounts as store

routes = web.RouteTableDef()
LIFETIME_S = 3600


@routes.post(CLIENT_V3 + "/user/{user_id}/openid/request_token")
async def request_token(request: web.Request) -> web.Response:
    req = await requester(request)
    await json_body(request, allow_empty=True)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("You can only request OpenID tokens for yourself")
    hs = hs_of(request)
    hs.ratelimiter.check("openid", req.user_id)
    token = secrets.token_urlsafe(32)
    now = int(time.time() * 1000)
    await hs.db.run(store.add_openid_token, hash_token(token), req.user_id, req.device_id,
                    now + LIFETIME_S * 1000, now)
    return json_response({"access_token": token, "token_type": "Bearer",
                          "matrix_server_name": hs.server_name, "expires_in": LIFETIME_S})


@routes.get("/_matrix/federation/v1/openid/userinfo")
async def userinfo(request: web.Request) -> web.Response:
    token = request.query.get("access_token")
    if not token:
        raise missing_param("access_token is required")
    user_id = await hs_of(request).db.run(store.get_openid_user, hash_token(token),
                                          int(time.time() * 1000))
    if user_id is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired")
    return json_response({"sub": user_id})
