"""OpenID (spec: client-server API "OpenID": /user/{userId}/openid/request_token, and the
server-server API's /openid/userinfo that widgets and integration managers check it with).

The token proves who the user is to a third party and nothing more: it is not an access
token, and the third party learns only the user ID.
"""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError, forbidden, missing_param
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.post(CLIENT_V3 + "/user/{user_id}/openid/request_token")
async def request_token(request: web.Request) -> web.Response:
    req = await requester(request)
    await json_body(request, allow_empty=True)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("You can only request OpenID tokens for yourself")
    hs = hs_of(request)
    hs.ratelimiter.check("openid", req.user_id)
    return json_response(await hs.openid.request_token(req.user_id, req.device_id))


@routes.get("/_matrix/federation/v1/openid/userinfo")
async def userinfo(request: web.Request) -> web.Response:
    token = request.query.get("access_token")
    if not token:
        raise missing_param("access_token is required")
    user_id = await hs_of(request).openid.user_of(token)
    if user_id is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired")
    return json_response({"sub": user_id})
