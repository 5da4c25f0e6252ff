"""User profiles (spec: client-server API "Profiles")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError, bad_json, forbidden, invalid_param, missing_param, not_found
from veche.http.base import (
    CLIENT_V3,
    client_ip,
    hs_of,
    json_body,
    json_response,
    requester,
    require_not_suspended,
)
from veche.services.accounts import MAX_AVATAR_URL_LEN, MAX_DISPLAYNAME_LEN, PROFILE_FIELDS

routes = web.RouteTableDef()


async def _profile(request: web.Request, field: str | None) -> dict[str, str]:
    hs = hs_of(request)
    user_id = request.match_info["user_id"]
    if hs.federation.is_local(user_id):
        return await hs.accounts.get_profile(user_id)
    return await hs.federation.remote_profile(user_id, field, client_ip(request))


@routes.get(CLIENT_V3 + "/profile/{user_id}")
async def get_profile(request: web.Request) -> web.Response:
    return json_response(await _profile(request, None))


@routes.get(CLIENT_V3 + "/profile/{user_id}/{field}")
async def get_field(request: web.Request) -> web.Response:
    field = request.match_info["field"]
    profile = await _profile(request, field)
    if field not in profile:
        raise not_found("Profile field not found")
    return json_response({field: profile[field]})


@routes.put(CLIENT_V3 + "/profile/{user_id}/{field}")
async def set_field(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    require_not_suspended(req)
    user_id, field = request.match_info["user_id"], request.match_info["field"]
    if user_id != req.user_id:
        raise forbidden("You may only change your own profile")
    if field not in PROFILE_FIELDS:
        raise MatrixError(400, "M_INVALID_PARAM", f"Profile field {field} is not supported")
    body = await json_body(request)
    if field not in body:
        raise missing_param(f"Missing {field}")
    value = body[field]
    if not isinstance(value, str):
        raise bad_json(f"{field} must be a string")
    limit = MAX_DISPLAYNAME_LEN if field == "displayname" else MAX_AVATAR_URL_LEN
    if len(value) > limit:
        raise invalid_param(f"{field} must be at most {limit} characters")
    if field == "avatar_url" and value and not value.startswith("mxc://"):
        raise invalid_param("avatar_url must be an mxc:// URI")
    await hs.accounts.set_profile_field(user_id, field, value)
    return json_response({})
