"""Account registration (spec: client-server API "Account registration")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.errors import MatrixError, bad_json, invalid_param, missing_param
from veche.http.base import (
    CLIENT_V1,
    CLIENT_V3,
    access_token_of,
    client_ip,
    hs_of,
    json_body,
    json_response,
)

routes = web.RouteTableDef()
APPSERVICE_LOGIN = "m.login.application_service"


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
    auth = body.get("auth")
    if body.get("type") == APPSERVICE_LOGIN or (
            isinstance(auth, dict) and auth.get("type") == APPSERVICE_LOGIN):
        return await _register_for_appservice(request, body)
    if not hs.config.registration_open:
        raise MatrixError(403, "M_FORBIDDEN", "Registration is disabled")
    username = _optional(body, "username", str, "a string")
    password = _optional(body, "password", str, "a string")
    device_id = _optional(body, "device_id", str, "a string")
    display = _optional(body, "initial_device_display_name", str, "a string")
    inhibit = _optional(body, "inhibit_login", bool, "a boolean") or False
    want_refresh = _optional(body, "refresh_token", bool, "a boolean") or False
    await hs.ratelimiter.acheck("registration", client_ip(request))
    # Settle everything that can fail before the client goes through the flow.
    if username is not None:
        username = username.lower()
        _check_not_exclusive(request, username)
        if not await hs.accounts.is_available(username):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
    # A body without auth is the client asking for the flows (Element sends `{}`): the 401
    # challenge comes first, the missing password only once it would be used.
    if not password and body.get("auth") is not None:
        raise missing_param("password is required")
    if device_id is not None and not device_id:
        raise invalid_param("device_id must not be empty")
    if hs.config.registration.require_token:
        flows = [["m.login.registration_token"]]
    else:
        flows = [["m.login.dummy"]]
    result = await hs.accounts.user_interactive_auth(body, flows, "/register", "POST")
    if not password:
        raise missing_param("password is required")
    token = result["params"].get("m.login.registration_token")
    localpart = username or await hs.accounts.generate_localpart()
    user_id = await hs.accounts.create_user(localpart, password, registration_token=token)
    return await _registered(request, user_id, device_id, display, inhibit, want_refresh)


async def _registered(request: web.Request, user_id: str, device_id: str | None,
                      display: str | None, inhibit: bool, want_refresh: bool) -> web.Response:
    hs = hs_of(request)
    if inhibit:
        return json_response({"user_id": user_id, "home_server": hs.server_name})
    session = await hs.accounts.login_session(
        user_id, device_id, display, want_refresh=want_refresh, ip=client_ip(request)
    )
    session.pop("well_known", None)
    return json_response(session)


def _check_not_exclusive(request: web.Request, localpart: str) -> None:
    hs = hs_of(request)
    if hs.config.app_service_config_files and hs.appservices.exclusive_owner(
            f"@{localpart}:{hs.server_name}") is not None:
        raise MatrixError(400, "M_EXCLUSIVE", "This user ID is reserved by an application service")


async def _register_for_appservice(request: web.Request, body: dict[str, Any]) -> web.Response:
    """An application service creates a (passwordless) user in its namespace."""
    hs = hs_of(request)
    token = access_token_of(request)
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Application services register with their as_token")
    service = hs.appservices.for_token(token) if hs.config.app_service_config_files else None
    if service is None:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown application service token")
    username = _optional(body, "username", str, "a string")
    if not username:
        raise missing_param("username is required")
    localpart = username.lower()
    user_id = f"@{localpart}:{hs.server_name}"
    if not service.matches_user(user_id, hs.server_name):
        raise MatrixError(400, "M_EXCLUSIVE", "The user ID is outside the application service's namespace")
    await hs.accounts.create_user(localpart, None)
    return await _registered(
        request, user_id, _optional(body, "device_id", str, "a string"),
        _optional(body, "initial_device_display_name", str, "a string"),
        _optional(body, "inhibit_login", bool, "a boolean") or False,
        _optional(body, "refresh_token", bool, "a boolean") or False)


@routes.get(CLIENT_V3 + "/register/available")
async def available(request: web.Request) -> web.Response:
    hs = hs_of(request)
    username = request.query.get("username")
    if not username:
        raise missing_param("username is required")
    _check_not_exclusive(request, username.lower())
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
    await hs.ratelimiter.acheck("registration", client_ip(request))
    return json_response({"valid": await hs.accounts.registration_token_valid(token)})
