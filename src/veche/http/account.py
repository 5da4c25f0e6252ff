"""Account management (spec: client-server API "Account registration and management":
whoami, password change, deactivation)."""

from __future__ import annotations

from aiohttp import web

from veche.errors import bad_json, missing_param
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/account/whoami")
async def whoami(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response({"user_id": req.user_id, "device_id": req.device_id, "is_guest": False})


@routes.post(CLIENT_V3 + "/account/password")
async def change_password(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    body = await json_body(request)
    new_password = body.get("new_password")
    if new_password is None:
        raise missing_param("Missing new_password")
    if not isinstance(new_password, str) or not new_password:
        raise bad_json("new_password must be a non-empty string")
    logout_devices = body.get("logout_devices", True)
    if not isinstance(logout_devices, bool):
        raise bad_json("logout_devices must be a boolean")
    await hs.accounts.user_interactive_auth(
        body, [["m.login.password"]], "/account/password", "POST", user_id=req.user_id
    )
    await hs.accounts.change_password(req.user_id, new_password, logout_devices=logout_devices,
                                      keep_device=req.device_id)
    return json_response({})


@routes.post(CLIENT_V3 + "/account/deactivate")
async def deactivate(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    body = await json_body(request, allow_empty=True)
    for key in ("id_server",):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise bad_json(f"{key} must be a string")
    if body.get("erase") is not None and not isinstance(body["erase"], bool):
        raise bad_json("erase must be a boolean")
    await hs.accounts.user_interactive_auth(
        body, [["m.login.password"]], "/account/deactivate", "POST", user_id=req.user_id
    )
    await hs.accounts.deactivate(req.user_id)
    return json_response({"id_server_unbind_result": "no-support"})


@routes.get(CLIENT_V3 + "/account/3pid")
async def threepids(request: web.Request) -> web.Response:
    # Veche binds no email addresses or phone numbers to accounts (m.3pid_changes is off).
    await requester(request)
    return json_response({"threepids": []})
