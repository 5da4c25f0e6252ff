"""Account registration (spec: client-server API "Account registration")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.errors import MatrixError, bad_json, invalid_param, missing_param
from veche.http.base import CLIENT_V1, CLIENT_V3, hs_of, json_body, json_response

routes = web.RouteTableDef()


def _optional(body: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise bad_json(f"{key} must be {what}")
    return value


@routes.post(CLIENT_V3 + "/register")
async def register(request: web.Request) -> web.Response:
    hs = hs_of(request)
    kind = request.query.get("kind", "user")
    if kind == "guest":
        raise MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled")
    if kind != "user":
        raise invalid_param("kind must be user or guest")
    body = await json_body(request)
    if not hs.config.registration_open:
        raise MatrixError(403, "M_FORBIDDEN", "Registration is disabled")
    username = _optional(body, "username", str, "a string")
    password = _optional(body, "password", str, "a string")
    device_id = _optional(body, "device_id", str, "a string")
    display = _optional(body, "initial_device_display_name", str, "a string")
    inhibit = _optional(body, "inhibit_login", bool, "a boolean") or False
    want_refresh = _optional(body, "refresh_token", bool, "a boolean") or False
    auth = body.get("auth")
    if isinstance(auth, dict) and auth.get("type") == "m.login.application_service":
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "No application services are registered")
    hs.ratelimiter.check("registration", request.remote or "")
    # Settle everything that can fail before the client goes through the flow.
    if username is not None:
        username = username.lower()
        if not await hs.accounts.is_available(username):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
    if not password:
        raise missing_param("password is required")
    if device_id is not None and not device_id:
        raise invalid_param("device_id must not be empty")
    if hs.config.registration.require_token:
        flows = [["m.login.registration_token"]]
    else:
        flows = [["m.login.dummy"]]
    result = await hs.accounts.user_interactive_auth(body, flows, "/register", "POST")
    token = result["params"].get("m.login.registration_token")
    localpart = username or await hs.accounts.generate_localpart()
    user_id = await hs.accounts.create_user(localpart, password, registration_token=token)
    if inhibit:
        return json_response({"user_id": user_id, "home_server": hs.server_name})
    session = await hs.accounts.login_session(
        user_id, device_id, display, want_refresh=want_refresh, ip=request.remote
    )
    session.pop("well_known", None)
    return json_response(session)


@routes.get(CLIENT_V3 + "/register/available")
async def available(request: web.Request) -> web.Response:
    hs = hs_of(request)
    username = request.query.get("username")
    if not username:
        raise missing_param("username is required")
    if not await hs.accounts.is_available(username.lower()):
        raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
    return json_response({"available": True})


@routes.get(CLIENT_V1 + "/register/m.login.registration_token/validity")
async def token_validity(request: web.Request) -> web.Response:
    hs = hs_of(request)
    token = request.query.get("token")
    if not token:
        raise missing_param("token is required")
    if not hs.config.registration_open:
        raise MatrixError(403, "M_FORBIDDEN", "Registration is disabled")
    hs.ratelimiter.check("registration", request.remote or "")
    return json_response({"valid": await hs.accounts.registration_token_valid(token)})
