"""Synapse's user admin API: /_synapse/admin/v2/users, deactivate, reset_password, whois,
devices (docs/admin_api/user_admin_api.md of Synapse). Server admins only."""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError, bad_json
from veche.http.admin import SYNAPSE_ADMIN, admin_requester, direction, paging
from veche.http.base import hs_of, json_body, json_response, query_bool

routes = web.RouteTableDef()

V1, V2 = SYNAPSE_ADMIN + "/v1", SYNAPSE_ADMIN + "/v2"


def _optional_bool(request: web.Request, name: str) -> bool | None:
    return None if name not in request.query else query_bool(request, name)


@routes.get(V2 + "/users")
async def list_users(request: web.Request) -> web.Response:
    await admin_requester(request)
    start, limit = paging(request)
    query_bool(request, "guests", True)  # validated; there are no guest accounts here
    return json_response(await hs_of(request).admin_users.list_users(
        start, limit, name=request.query.get("name"), user_id=request.query.get("user_id"),
        deactivated=query_bool(request, "deactivated", False),
        admins=_optional_bool(request, "admins"),
        order_by=request.query.get("order_by", "name"), backwards=direction(request),
        locked=query_bool(request, "locked", False)))


@routes.get(V2 + "/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_users.get_user(request.match_info["user_id"]))


@routes.put(V2 + "/users/{user_id}")
async def put_user(request: web.Request) -> web.Response:
    await admin_requester(request)
    body = await json_body(request)
    status, user = await hs_of(request).admin_users.put_user(request.match_info["user_id"], body)
    return json_response(user, status)


@routes.post(V1 + "/deactivate/{user_id}")
async def deactivate(request: web.Request) -> web.Response:
    await admin_requester(request)
    body = await json_body(request, allow_empty=True)
    if not isinstance(body.get("erase", False), bool):
        raise bad_json("erase must be a boolean")
    await hs_of(request).admin_users.deactivate(request.match_info["user_id"])
    return json_response({"id_server_unbind_result": "success"})


@routes.post(V1 + "/reset_password/{user_id}")
async def reset_password(request: web.Request) -> web.Response:
    await admin_requester(request)
    body = await json_body(request)
    password, logout = body.get("new_password"), body.get("logout_devices", True)
    if password is None:
        raise MatrixError(400, "M_MISSING_PARAM", "new_password is required")
    if not isinstance(password, str) or not isinstance(logout, bool):
        raise bad_json("new_password must be a string and logout_devices a boolean")
    await hs_of(request).admin_users.reset_password(request.match_info["user_id"], password, logout)
    return json_response({})


@routes.get(V1 + "/users/{user_id}/admin")
async def get_admin(request: web.Request) -> web.Response:
    await admin_requester(request)
    admin = await hs_of(request).admin_users.is_admin(request.match_info["user_id"])
    return json_response({"admin": admin})


@routes.put(V1 + "/users/{user_id}/admin")
async def set_admin(request: web.Request) -> web.Response:
    req = await admin_requester(request)
    body = await json_body(request)
    admin = body.get("admin")
    if not isinstance(admin, bool):
        raise MatrixError(400, "M_MISSING_PARAM", "admin must be a boolean")
    if not admin and request.match_info["user_id"] == req.user_id:
        raise MatrixError(400, "M_UNKNOWN", "You may not demote yourself.")
    await hs_of(request).admin_users.set_admin(request.match_info["user_id"], admin)
    return json_response({})


@routes.get(V2 + "/users/{user_id}/devices")
async def devices(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_users.devices(request.match_info["user_id"]))


@routes.get(V2 + "/users/{user_id}/devices/{device_id}")
async def device(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_users.device(
        request.match_info["user_id"], request.match_info["device_id"]))


@routes.delete(V2 + "/users/{user_id}/devices/{device_id}")
async def delete_device(request: web.Request) -> web.Response:
    await admin_requester(request)
    await hs_of(request).admin_users.delete_devices(
        request.match_info["user_id"], [request.match_info["device_id"]])
    return json_response({})


@routes.post(V2 + "/users/{user_id}/delete_devices")
async def delete_devices(request: web.Request) -> web.Response:
    await admin_requester(request)
    devices = (await json_body(request)).get("devices")
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise bad_json("devices must be a list of device IDs")
    await hs_of(request).admin_users.delete_devices(request.match_info["user_id"], devices)
    return json_response({})


@routes.get(V1 + "/users/{user_id}/joined_rooms")
async def joined_rooms(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_users.joined_rooms(
        request.match_info["user_id"]))


@routes.get(V1 + "/whois/{user_id}")
async def whois(request: web.Request) -> web.Response:
    req = await admin_requester(request)
    return json_response(await hs_of(request).admin.whois(req.user_id, request.match_info["user_id"]))
