"""Device management (spec: client-server API "Device management")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import bad_json, missing_param, not_found
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()
UIA_FLOWS = [["m.login.password"]]


@routes.get(CLIENT_V3 + "/devices")
async def list_devices(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response({"devices": await hs_of(request).accounts.list_devices(req.user_id)})


@routes.get(CLIENT_V3 + "/devices/{device_id}")
async def get_device(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(
        await hs_of(request).accounts.get_device(req.user_id, request.match_info["device_id"])
    )


@routes.put(CLIENT_V3 + "/devices/{device_id}")
async def rename_device(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    name = body.get("display_name")
    if name is not None and not isinstance(name, str):
        raise bad_json("display_name must be a string")
    if name is not None and len(name) > 100:
        raise bad_json("display_name must be at most 100 characters")
    await hs_of(request).accounts.rename_device(
        req.user_id, request.match_info["device_id"], name
    )
    return json_response({})


@routes.delete(CLIENT_V3 + "/devices/{device_id}")
async def delete_device(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    device_id = request.match_info["device_id"]
    body = await json_body(request, allow_empty=True)
    devices = {d["device_id"] for d in await hs.accounts.list_devices(req.user_id)}
    if device_id not in devices:
        raise not_found("Unknown device")
    await hs.accounts.user_interactive_auth(
        body, UIA_FLOWS, f"/devices/{device_id}", "DELETE", user_id=req.user_id
    )
    await hs.accounts.delete_devices(req.user_id, [device_id])
    return json_response({})


@routes.post(CLIENT_V3 + "/delete_devices")
async def delete_devices(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    body = await json_body(request)
    devices = body.get("devices")
    if devices is None:
        raise missing_param("Missing devices")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise bad_json("devices must be a list of strings")
    await hs.accounts.user_interactive_auth(
        body, UIA_FLOWS, "/delete_devices", "POST", user_id=req.user_id
    )
    await hs.accounts.delete_devices(req.user_id, list(devices))
    return json_response({})
