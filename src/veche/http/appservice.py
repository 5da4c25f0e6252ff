"""Application service extensions of the client-server API (spec: "Application Service
API", Client-Server API Extensions: /appservice/{appserviceId}/ping)."""

from __future__ import annotations

from aiohttp import web

from veche.errors import bad_json, forbidden
from veche.http.base import CLIENT_V1, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()


@routes.post(CLIENT_V1 + "/appservice/{appservice_id}/ping")
async def ping(request: web.Request) -> web.Response:
    await requester(request)
    service = request.get("appservice")
    if service is None or service.id != request.match_info["appservice_id"]:
        raise forbidden("Only the application service itself may ping it")
    body = await json_body(request, allow_empty=True)
    txn_id = body.get("transaction_id")
    if txn_id is not None and not isinstance(txn_id, str):
        raise bad_json("transaction_id must be a string")
    return json_response({"duration_ms": await hs_of(request).appservices.ping(service, txn_id)})
