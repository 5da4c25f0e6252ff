"""Room endpoints: creation, membership, sending, state, redaction and timeline reads
(client-server API "Rooms", "Room membership", "Sending events", "Getting events")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.core.filters import (
    DEFAULT_ROOM_EVENT_FILTER,
    RoomEventFilter,
    parse_room_event_filter,
)
from veche.errors import bad_json, invalid_param, missing_param
from veche.http.base import (
    CLIENT_V1,
    CLIENT_V3,
    hs_of,
    json_body,
    json_query_param,
    json_response,
    query_int,
    requester,
    require_not_suspended,
    require_str,
)
from veche.services.auth import Requester
from veche.services.rooms import check_user_id

routes = web.RouteTableDef()

MAX_LIMIT = 1000


def _room_id(request: web.Request) -> str:
    return request.match_info["roomId"]


@routes.post(f"{CLIENT_V3}/createRoom")
async def create_room(request: web.Request) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    body = await json_body(request, allow_empty=True)
    return json_response(await hs_of(request).room_creation.create_room(req.user_id, body))


# --- membership -----------------------------------------------------------------------------

@routes.post(CLIENT_V3 + "/join/{roomIdOrAlias}")
async def join_by_id_or_alias(request: web.Request) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    body = await json_body(request, allow_empty=True)
    # server_name (and its newer spelling via): servers to join a remote room through.
    servers = request.query.getall("server_name", []) + request.query.getall("via", [])
    room_id = await hs_of(request).membership.join(
        req.user_id, request.match_info["roomIdOrAlias"], body, servers)
    return json_response({"room_id": room_id})


@routes.post(CLIENT_V3 + "/rooms/{roomId}/join")
async def join_room(request: web.Request) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    body = await json_body(request, allow_empty=True)
    room_id = _room_id(request)
    if not room_id.startswith("!"):
        raise invalid_param("Expected a room ID")
    room_id = await hs_of(request).membership.join(req.user_id, room_id, body)
    return json_response({"room_id": room_id})


@routes.post(CLIENT_V3 + "/knock/{roomIdOrAlias}")
async def knock(request: web.Request) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    body = await json_body(request, allow_empty=True)
    servers = request.query.getall("server_name", []) + request.query.getall("via", [])
    room_id = await hs_of(request).membership.knock(
        req.user_id, request.match_info["roomIdOrAlias"], body, servers)
    return json_response({"room_id": room_id})


@routes.post(CLIENT_V3 + "/rooms/{roomId}/leave")
async def leave(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request, allow_empty=True)
    await hs_of(request).membership.set_membership(req.user_id, _room_id(request), req.user_id, "leave", body)
    return json_response({})


@routes.post(CLIENT_V3 + "/rooms/{roomId}/forget")
async def forget(request: web.Request) -> web.Response:
    req = await requester(request)
    await json_body(request, allow_empty=True)
    await hs_of(request).membership.forget(req.user_id, _room_id(request))
    return json_response({})


async def _targeted(request: web.Request, membership: str, *, unban: bool = False) -> web.Response:
    req = await requester(request)
    require_not_suspended(req)
    body = await json_body(request)
    target = check_user_id(require_str(body, "user_id"))
    await hs_of(request).membership.set_membership(
        req.user_id, _room_id(request), target, membership, body, unban=unban
    )
    return json_response({})


@routes.post(CLIENT_V3 + "/rooms/{roomId}/invite")
async def invite(request: web.Request) -> web.Response:
    return await _targeted(request, "invite")


@routes.post(CLIENT_V3 + "/rooms/{roomId}/kick")
async def kick(request: web.Request) -> web.Response:
    return await _targeted(request, "leave")


@routes.post(CLIENT_V3 + "/rooms/{roomId}/ban")
async def ban(request: web.Request) -> web.Response:
    return await _targeted(request, "ban")


@routes.post(CLIENT_V3 + "/rooms/{roomId}/unban")
async def unban(request: web.Request) -> web.Response:
    return await _targeted(request, "leave", unban=True)


# --- sending --------------------------------------------------------------------------------

@routes.put(CLIENT_V3 + "/rooms/{roomId}/send/{eventType}/{txnId}")
async def send_message(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    if request.match_info["eventType"] == "m.room.redaction":
        await _require_own_if_suspended(request, req, body.get("redacts"))
    else:
        require_not_suspended(req)
    event_id = await hs_of(request).rooms.send_message(
        req.user_id, req.device_id, _room_id(request), request.match_info["eventType"],
        request.match_info["txnId"], body,
    )
    return json_response({"event_id": event_id})


@routes.put(CLIENT_V3 + "/rooms/{roomId}/state/{eventType}")
@routes.put(CLIENT_V3 + "/rooms/{roomId}/state/{eventType}/{stateKey:.*}")
async def put_state(request: web.Request) -> web.Response:
    req = await requester(request)
    if req.suspended and not (request.match_info["eventType"] == "m.room.member"
                              and request.match_info.get("stateKey") == req.user_id):
        require_not_suspended(req)
    body = await json_body(request)
    event_id = await hs_of(request).rooms.send_state(
        req.user_id, _room_id(request), request.match_info["eventType"],
        request.match_info.get("stateKey", ""), body,
    )
    return json_response({"event_id": event_id})


@routes.get(CLIENT_V3 + "/rooms/{roomId}/state/{eventType}")
@routes.get(CLIENT_V3 + "/rooms/{roomId}/state/{eventType}/{stateKey:.*}")
async def get_state_event(request: web.Request) -> web.Response:
    req = await requester(request)
    fmt = request.query.get("format", "content")
    if fmt not in ("content", "event"):
        raise invalid_param("format must be content or event")
    event = await hs_of(request).room_state.get_state_event(
        _room_id(request), req.user_id, request.match_info["eventType"],
        request.match_info.get("stateKey", ""),
    )
    return json_response(event if fmt == "event" else event.get("content", {}))


@routes.get(CLIENT_V3 + "/rooms/{roomId}/state")
async def get_state(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(await hs_of(request).room_state.get_state(_room_id(request), req.user_id))


async def _require_own_if_suspended(request: web.Request, req: Requester, event_id: Any) -> None:
    """A suspended user may still redact their own events, and nobody else's."""
    if not req.suspended:
        return
    sender = await hs_of(request).rooms.event_sender(event_id) if isinstance(event_id, str) else None
    if sender != req.user_id:
        require_not_suspended(req)


@routes.put(CLIENT_V3 + "/rooms/{roomId}/redact/{eventId}/{txnId}")
async def redact(request: web.Request) -> web.Response:
    req = await requester(request)
    await _require_own_if_suspended(request, req, request.match_info["eventId"])
    body = await json_body(request, allow_empty=True)
    event_id = await hs_of(request).rooms.redact(
        req.user_id, req.device_id, _room_id(request), request.match_info["eventId"],
        request.match_info["txnId"], body,
    )
    return json_response({"event_id": event_id})


# --- reading --------------------------------------------------------------------------------

@routes.get(CLIENT_V3 + "/rooms/{roomId}/messages")
async def messages(request: web.Request) -> web.Response:
    req = await requester(request)
    q = request.query
    limit = query_int(request, "limit", 10, maximum=MAX_LIMIT)
    assert limit is not None
    body = await hs_of(request).timeline.messages(
        _room_id(request), req.user_id, q.get("from"), q.get("to"), q.get("dir", "b"),
        limit, _event_filter(request),
    )
    return json_response(body)


@routes.get(CLIENT_V3 + "/rooms/{roomId}/context/{eventId}")
async def context(request: web.Request) -> web.Response:
    req = await requester(request)
    limit = query_int(request, "limit", 10, maximum=MAX_LIMIT)
    assert limit is not None
    body = await hs_of(request).timeline.context(
        _room_id(request), req.user_id, request.match_info["eventId"], limit,
        _event_filter(request),
    )
    return json_response(body)


def _event_filter(request: web.Request) -> RoomEventFilter:
    raw = request.query.get("filter")
    if raw is None:
        return DEFAULT_ROOM_EVENT_FILTER
    try:
        return parse_room_event_filter(json_query_param(raw, "filter"))
    except ValueError as e:
        raise bad_json(str(e)) from None


@routes.get(CLIENT_V3 + "/rooms/{roomId}/event/{eventId}")
async def get_event(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(await hs_of(request).timeline.get_event(
        _room_id(request), req.user_id, request.match_info["eventId"]
    ))


@routes.get(CLIENT_V3 + "/joined_rooms")
async def joined_rooms(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response({"joined_rooms": await hs_of(request).room_state.joined_rooms(req.user_id)})


@routes.get(CLIENT_V3 + "/rooms/{roomId}/joined_members")
async def joined_members(request: web.Request) -> web.Response:
    req = await requester(request)
    joined = await hs_of(request).room_state.joined_members(_room_id(request), req.user_id)
    return json_response({"joined": joined})


@routes.get(CLIENT_V3 + "/rooms/{roomId}/members")
async def members(request: web.Request) -> web.Response:
    req = await requester(request)
    q = request.query
    chunk = await hs_of(request).room_state.members(
        _room_id(request), req.user_id, q.get("at"), q.get("membership"), q.get("not_membership")
    )
    return json_response({"chunk": chunk})


@routes.get(CLIENT_V1 + "/rooms/{roomId}/timestamp_to_event")
async def timestamp_to_event(request: web.Request) -> web.Response:
    req = await requester(request)
    ts = query_int(request, "ts")
    if ts is None:
        raise missing_param("ts is required")
    direction = request.query.get("dir")
    if direction is None:
        raise missing_param("dir is required")
    return json_response(await hs_of(request).timeline.timestamp_to_event(
        _room_id(request), req.user_id, ts, direction
    ))
