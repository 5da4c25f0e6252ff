"""Login, logout and token refresh (spec: client-server API "Login", "Refreshing access tokens")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError, bad_json, forbidden
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/login")
async def login_flows(request: web.Request) -> web.Response:
    return json_response({"flows": [{"type": "m.login.password"}]})


@routes.post(CLIENT_V3 + "/login")
async def login(request: web.Request) -> web.Response:
    hs = hs_of(request)
    body = await json_body(request)
    if body.get("type") != "m.login.password":
        raise MatrixError(400, "M_UNKNOWN", "Unknown login type")
    identifier = body.get("identifier")
    who = None
    if isinstance(identifier, dict):
        if identifier.get("type") != "m.id.user":
            raise MatrixError(400, "M_UNKNOWN", "Only m.id.user identifiers are supported")
        who = identifier.get("user")
    elif identifier is not None:
        raise bad_json("identifier must be an object")
    else:
        who = body.get("user")
    password = body.get("password")
    device_id, display = body.get("device_id"), body.get("initial_device_display_name")
    for name, value in (("user", who), ("password", password)):
        if not isinstance(value, str):
            raise bad_json(f"{name} must be a string")
    for name, value in (("device_id", device_id), ("initial_device_display_name", display)):
        if value is not None and not isinstance(value, str):
            raise bad_json(f"{name} must be a string")
    hs.ratelimiter.check("login", request.remote or "")
    user_id = who if who.startswith("@") else hs.accounts.user_id(who.lower())
    if not await hs.accounts.check_password(user_id, password):
        raise forbidden("Invalid username or password")
    hs.ratelimiter.check("login", user_id)
    return json_response(await hs.accounts.login_session(
        user_id, device_id, display, want_refresh=body.get("refresh_token") is True
    ))


@routes.post(CLIENT_V3 + "/logout")
async def logout(request: web.Request) -> web.Response:
    req = await requester(request)
    await hs_of(request).accounts.logout(req.user_id, req.device_id)
    return json_response({})


@routes.post(CLIENT_V3 + "/logout/all")
async def logout_all(request: web.Request) -> web.Response:
    req = await requester(request)
    await hs_of(request).accounts.logout(req.user_id, None)
    return json_response({})


@routes.post(CLIENT_V3 + "/refresh")
async def refresh(request: web.Request) -> web.Response:
    body = await json_body(request)
    token = body.get("refresh_token")
    if not isinstance(token, str):
        raise bad_json("refresh_token must be a string")
    return json_response(await hs_of(request).accounts.refresh(token))
