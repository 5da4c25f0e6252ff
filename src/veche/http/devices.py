"""Device management (spec: client-server API "Device management")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import bad_json, not_found
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester
from veche.storage import accounts as store

routes = web.RouteTableDef()


def _clean(device: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in device.items() if v is not None}


@routes.get(CLIENT_V3 + "/devices")
async def list_devices(request: web.Request) -> web.Response:
    req = await requester(request)
    devices = await hs_of(request).db.run(store.list_devices, req.user_id)
    return json_response({"devices": [_clean(d) for d in devices]})


@routes.get(CLIENT_V3 + "/devices/{device_id}")
async def get_device(request: web.Request) -> web.Response:
    req = await requester(request)
    devices = await hs_of(request).db.run(store.list_devices, req.user_id)
    for device in devices:
        if device["device_id"] == request.match_info["device_id"]:
            return json_response(_clean(device))
    raise not_found("Unknown device")


@routes.put(CLIENT_V3 + "/devices/{device_id}")
async def rename_device(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    name = body.get("display_name")
    if name is not None and not isinstance(name, str):
        raise bad_json("display_name must be a string")
    changed = await hs_of(request).db.run(
        store.rename_device, req.user_id, request.match_info["device_id"], name
    )
    if not changed:
        raise not_found("Unknown device")
    return json_response({})
