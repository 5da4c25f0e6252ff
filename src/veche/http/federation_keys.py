"""Server-server API for end-to-end encryption: `GET /user/devices/{userId}`,
`POST /user/keys/query`, `POST /user/keys/claim` (services/device_lists.py, e2e_keys.py).
Only this server's users are answered for; others are left out."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.errors import MatrixError, bad_json, missing_param
from veche.http.base import hs_of, json_body, json_response
from veche.http.federation import FEDERATION_V1, federation_origin

federation_routes = web.RouteTableDef()


def _own_users(request: web.Request, body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        raise missing_param(f"Missing {name}")
    if not isinstance(value, dict):
        raise bad_json(f"{name} must be an object")
    server_name = hs_of(request).server_name
    return {u: v for u, v in value.items() if u.partition(":")[2] == server_name}


@federation_routes.get(FEDERATION_V1 + "/user/devices/{userId}")
async def user_devices(request: web.Request) -> web.Response:
    await federation_origin(request)
    hs = hs_of(request)
    user_id = request.match_info["userId"]
    if user_id.partition(":")[2] != hs.server_name:
        raise MatrixError(400, "M_INVALID_PARAM", "Not a user of this server")
    return json_response(await hs.device_lists.serve_user_devices(user_id))


@federation_routes.post(FEDERATION_V1 + "/user/keys/query")
async def user_keys_query(request: web.Request) -> web.Response:
    await federation_origin(request)
    wanted = _own_users(request, await json_body(request), "device_keys")
    for devices in wanted.values():
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise bad_json("device_keys values must be lists of device IDs")
    hs = hs_of(request)
    got = await hs.e2e_keys.query("", wanted, local_only=True)
    for keys in got["device_keys"].values():
        for device in keys.values():
            # Device names stay on this server (Synapse's default too).
            device.get("unsigned", {}).pop("device_display_name", None)
    return json_response({name: got[name] for name in
                          ("device_keys", "master_keys", "self_signing_keys")})


@federation_routes.post(FEDERATION_V1 + "/user/keys/claim")
async def user_keys_claim(request: web.Request) -> web.Response:
    await federation_origin(request)
    wanted = _own_users(request, await json_body(request), "one_time_keys")
    for devices in wanted.values():
        if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
            raise bad_json("one_time_keys values must map device IDs to algorithms")
    got = await hs_of(request).e2e_keys.claim(wanted, local_only=True)
    return json_response({"one_time_keys": got["one_time_keys"]})
