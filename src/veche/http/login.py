"""Login, logout and token refresh (spec: client-server API "Legacy login", "Refreshing
access tokens", "Logout")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError, bad_json, missing_param
from veche.http.base import CLIENT_V3, client_ip, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/login")
async def login_flows(request: web.Request) -> web.Response:
    return json_response({"flows": [{"type": "m.login.password"}]})


@routes.post(CLIENT_V3 + "/login")
async def login(request: web.Request) -> web.Response:
    hs = hs_of(request)
    body = await json_body(request)
    login_type = body.get("type")
    if login_type is None:
        raise missing_param("Missing type")
    if login_type != "m.login.password":
        raise MatrixError(400, "M_UNKNOWN", "Unknown login type")
    identifier = body.get("identifier")
    if isinstance(identifier, dict):
        id_type = identifier.get("type")
        if id_type != "m.id.user":
            raise MatrixError(400, "M_UNKNOWN", "Only m.id.user identifiers are supported")
        who = identifier.get("user")
    elif identifier is not None:
        raise bad_json("identifier must be an object")
    else:
        who = body.get("user")  # deprecated top-level `user`
    password = body.get("password")
    if who is None:
        raise missing_param("Missing identifier.user")
    if password is None:
        raise missing_param("Missing password")
    if not isinstance(who, str):
        raise bad_json("user must be a string")
    if not isinstance(password, str):
        raise bad_json("password must be a string")
    device_id, display = body.get("device_id"), body.get("initial_device_display_name")
    for name, value in (("device_id", device_id), ("initial_device_display_name", display)):
        if value is not None and not isinstance(value, str):
            raise bad_json(f"{name} must be a string")
    want_refresh = body.get("refresh_token", False)
    if not isinstance(want_refresh, bool):
        raise bad_json("refresh_token must be a boolean")
    return json_response(await hs.accounts.login(
        who, password, device_id or None, display, want_refresh=want_refresh,
        ip=client_ip(request),
    ))


@routes.post(CLIENT_V3 + "/logout")
async def logout(request: web.Request) -> web.Response:
    req = await requester(request, allow_expired=True, allow_locked=True)
    await hs_of(request).accounts.logout(req.user_id, req.device_id)
    return json_response({})


@routes.post(CLIENT_V3 + "/logout/all")
async def logout_all(request: web.Request) -> web.Response:
    req = await requester(request, allow_expired=True, allow_locked=True)
    await hs_of(request).accounts.logout(req.user_id, None)
    return json_response({})


@routes.post(CLIENT_V3 + "/refresh")
async def refresh(request: web.Request) -> web.Response:
    body = await json_body(request)
    token = body.get("refresh_token")
    if token is None:
        raise missing_param("Missing refresh_token")
    if not isinstance(token, str):
        raise bad_json("refresh_token must be a string")
    return json_response(await hs_of(request).accounts.refresh(token))
