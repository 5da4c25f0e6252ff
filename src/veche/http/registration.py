"""Account registration (spec: client-server API "Account registration")."""

from __future__ import annotations

import secrets

from aiohttp import web

from veche.errors import MatrixError, bad_json
from veche.http.base import CLIENT_V1, CLIENT_V3, hs_of, json_body, json_response

routes = web.RouteTableDef()


@routes.post(CLIENT_V3 + "/register")
async def register(request: web.Request) -> web.Response:
    hs = hs_of(request)
    kind = request.query.get("kind", "user")
    if kind == "guest":
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
    if kind != "user":
        raise MatrixError(400, "M_INVALID_PARAM", "kind must be user or guest")
    body = await json_body(request)
    if not hs.config.registration_open:
        raise MatrixError(403, "M_FORBIDDEN", "Registration is disabled")
    hs.ratelimiter.check("registration", request.remote or "")
    username, password = body.get("username"), body.get("password")
    device_id, display = body.get("device_id"), body.get("initial_device_display_name")
    for name, value in (("username", username), ("password", password), ("device_id", device_id),
                        ("initial_device_display_name", display)):
        if value is not None and not isinstance(value, str):
            raise bad_json(f"{name} must be a string")
    inhibit = body.get("inhibit_login", False)
    if not isinstance(inhibit, bool):
        raise bad_json("inhibit_login must be a boolean")
    if username is not None:
        username = username.lower()
        if not await hs.accounts.is_available(username):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
    flows = [["m.login.registration_token"]] if hs.config.registration.require_token and not \
        hs.config.dev else [["m.login.dummy"]]
    await hs.accounts.user_interactive_auth(body, flows, "/register", "POST")
    if not password:
        raise MatrixError(400, "M_MISSING_PARAM", "password is required")
    localpart = username or f"u{secrets.token_hex(6)}"
    user_id = await hs.accounts.create_user(localpart, password)
    if inhibit:
        return json_response({"user_id": user_id, "home_server": hs.server_name})
    session = await hs.accounts.login_session(
        user_id, device_id, display, want_refresh=body.get("refresh_token") is True
    )
    session.pop("well_known", None)
    return json_response(session)


@routes.get(CLIENT_V3 + "/register/available")
async def available(request: web.Request) -> web.Response:
    username = request.query.get("username")
    if not username:
        raise MatrixError(400, "M_MISSING_PARAM", "username is required")
    if not await hs_of(request).accounts.is_available(username.lower()):
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
    return json_response({"available": True})


@routes.get(CLIENT_V1 + "/register/m.login.registration_token/validity")
async def token_validity(request: web.Request) -> web.Response:
    token = request.query.get("token")
    if not token:
        raise MatrixError(400, "M_MISSING_PARAM", "token is required")
    return json_response({"valid": await hs_of(request).accounts.registration_token_valid(token)})
