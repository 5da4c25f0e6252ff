"""Server-server API: transactions (`/send`) and the events and state served to other servers
(services/federation_inbound.py, services/federation_serving.py)."""

from __future__ import annotations

from aiohttp import web

from veche.errors import MatrixError, invalid_param, missing_param
from veche.http.base import hs_of, json_body, json_response
from veche.http.federation import FEDERATION_V1, federation_body, federation_origin

# 50 PDUs of 64 KiB each and room for the EDUs: the client API's 1 MiB is far too small.
SEND_MAX_BODY_BYTES = 8 * 1024 * 1024

federation_routes = web.RouteTableDef()


def _event_id_param(request: web.Request) -> str:
    event_id = request.query.get("event_id")
    if not event_id:
        raise missing_param("Missing event_id")
    return event_id


def _int_param(request: web.Request, name: str) -> int:
    raw = request.query.get(name)
    if raw is None:
        raise missing_param(f"Missing {name}")
    try:
        value = int(raw)
    except ValueError:
        raise invalid_param(f"{name} must be an integer") from None
    if not -(2**63) <= value < 2**63:
        raise invalid_param(f"{name} is out of range")
    return value


@federation_routes.put(FEDERATION_V1 + "/send/{txnId}")
async def send_transaction(request: web.Request) -> web.Response:
    # A transaction may hold 50 PDUs of 64 KiB each: more than the client API's body limit.
    request = request.clone(client_max_size=SEND_MAX_BODY_BYTES)
    origin = await federation_origin(request)
    body = await federation_body(request)
    result = await hs_of(request).federation_inbound.on_send(
        origin, request.match_info["txnId"], body)
    return json_response(result)


@federation_routes.get(FEDERATION_V1 + "/event/{eventId}")
async def get_event(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    serving = hs_of(request).federation_serving
    return json_response(await serving.get_event(origin, request.match_info["eventId"]))


@federation_routes.get(FEDERATION_V1 + "/state/{roomId}")
async def get_state(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    serving = hs_of(request).federation_serving
    return json_response(await serving.state(
        origin, request.match_info["roomId"], _event_id_param(request)))


@federation_routes.get(FEDERATION_V1 + "/state_ids/{roomId}")
async def get_state_ids(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    serving = hs_of(request).federation_serving
    return json_response(await serving.state_ids(
        origin, request.match_info["roomId"], _event_id_param(request)))


@federation_routes.get(FEDERATION_V1 + "/event_auth/{roomId}/{eventId}")
async def get_event_auth(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    serving = hs_of(request).federation_serving
    return json_response(await serving.event_auth(
        origin, request.match_info["roomId"], request.match_info["eventId"]))


@federation_routes.get(FEDERATION_V1 + "/backfill/{roomId}")
async def backfill(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    starts = request.query.getall("v", [])
    if not starts:
        raise missing_param("Missing v")
    limit = _int_param(request, "limit")
    serving = hs_of(request).federation_serving
    return json_response(await serving.backfill(origin, request.match_info["roomId"], starts, limit))


@federation_routes.post(FEDERATION_V1 + "/get_missing_events/{roomId}")
async def get_missing_events(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    body = await json_body(request)
    serving = hs_of(request).federation_serving
    return json_response(await serving.get_missing_events(origin, request.match_info["roomId"], body))


@federation_routes.get(FEDERATION_V1 + "/timestamp_to_event/{roomId}")
async def timestamp_to_event(request: web.Request) -> web.Response:
    origin = await federation_origin(request)
    ts = _int_param(request, "ts")
    direction = request.query.get("dir")
    if direction not in ("f", "b"):
        raise MatrixError(400, "M_INVALID_PARAM", "dir must be f or b")
    serving = hs_of(request).federation_serving
    return json_response(await serving.timestamp_to_event(
        origin, request.match_info["roomId"], ts, direction))
