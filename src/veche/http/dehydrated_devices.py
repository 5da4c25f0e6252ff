"""Dehydrated devices (MSC3814; not yet in the spec, so under its unstable prefix, as
matrix-js-sdk and Element call it)."""

from __future__ import annotations

from aiohttp import web

from veche.http.base import hs_of, json_body, json_response, requester

routes = web.RouteTableDef()
PREFIX = "/_matrix/client/unstable/org.matrix.msc3814.v1"


@routes.get(PREFIX + "/dehydrated_device")
async def get_dehydrated_device(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(await hs_of(request).dehydrated_devices.get(req.user_id))


@routes.put(PREFIX + "/dehydrated_device")
async def put_dehydrated_device(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    device_id = await hs_of(request).dehydrated_devices.put(req.user_id, body)
    return json_response({"device_id": device_id})


@routes.delete(PREFIX + "/dehydrated_device")
async def delete_dehydrated_device(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response({"device_id": await hs_of(request).dehydrated_devices.delete(req.user_id)})


@routes.post(PREFIX + "/dehydrated_device/{device_id}/events")
async def dehydrated_device_events(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request, allow_empty=True)
    return json_response(await hs_of(request).dehydrated_devices.events(
        req.user_id, request.match_info["device_id"], body.get("next_batch")))
