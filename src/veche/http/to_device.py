"""Send-to-device messaging (spec: client-server API "Send-to-Device messaging")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import bad_json, missing_param
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()
MAX_ID_LEN = 255


@routes.put(CLIENT_V3 + "/sendToDevice/{eventType}/{txnId}")
async def send_to_device(request: web.Request) -> web.Response:
    req = await requester(request)
    event_type, txn_id = request.match_info["eventType"], request.match_info["txnId"]
    if len(event_type) > MAX_ID_LEN or len(txn_id) > MAX_ID_LEN:
        raise bad_json("Event type and transaction ID must be at most 255 characters")
    body = await json_body(request)
    messages = body.get("messages")
    if messages is None:
        raise missing_param("Missing messages")
    if not isinstance(messages, dict):
        raise bad_json("messages must be an object")
    for user_id, by_device in messages.items():
        if not user_id.startswith("@") or ":" not in user_id or len(user_id) > MAX_ID_LEN:
            raise bad_json(f"Invalid user ID {user_id[:64]!r}")
        if not isinstance(by_device, dict):
            raise bad_json("messages must map user IDs to objects of device ID to content")
        for device_id, content in by_device.items():
            if not isinstance(content, dict) or len(device_id) > MAX_ID_LEN:
                raise bad_json("Each message must be an object")
    await hs_of(request).to_device.send(req.user_id, req.device_id, event_type, txn_id, messages)
    return json_response({})
