"""Server-side key backups (spec: client-server API "Server-side key backups")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.errors import MatrixError, bad_json, invalid_param, missing_param
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()
VERSION = CLIENT_V3 + "/room_keys/version"
KEYS = CLIENT_V3 + "/room_keys/keys"
MAX_ID_LEN = 255


def _algorithm_and_auth_data(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    algorithm, auth_data = body.get("algorithm"), body.get("auth_data")
    if algorithm is None or auth_data is None:
        raise missing_param("algorithm and auth_data are required")
    if not isinstance(algorithm, str) or not algorithm or len(algorithm) > MAX_ID_LEN:
        raise bad_json("algorithm must be a non-empty string")
    if not isinstance(auth_data, dict):
        raise bad_json("auth_data must be an object")
    return algorithm, auth_data


def _query_version(request: web.Request) -> str:
    version = request.query.get("version")
    if version is None:
        raise missing_param("The version query parameter is required")
    return version


def _key_data(value: Any) -> dict[str, Any]:
    """A KeyBackupData object, checked field by field."""
    if not isinstance(value, dict):
        raise bad_json("key data must be an object")
    for name in ("first_message_index", "forwarded_count"):
        n = value.get(name)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**53:
            raise bad_json(f"{name} must be a non-negative integer")
    if not isinstance(value.get("is_verified"), bool):
        raise bad_json("is_verified must be a boolean")
    if not isinstance(value.get("session_data"), dict):
        raise bad_json("session_data must be an object")
    return {k: value[k] for k in
            ("first_message_index", "forwarded_count", "is_verified", "session_data")}


def _room_id(room_id: Any) -> str:
    if not isinstance(room_id, str) or not room_id.startswith("!") or len(room_id) > MAX_ID_LEN:
        raise invalid_param("Invalid room ID")
    return room_id


def _session_id(session_id: Any) -> str:
    if not isinstance(session_id, str) or not session_id or len(session_id) > MAX_ID_LEN:
        raise invalid_param("Invalid session ID")
    return session_id


def _sessions(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("sessions"), dict):
        raise bad_json("sessions must be an object")
    return {_session_id(s): _key_data(k) for s, k in value["sessions"].items()}


# --- versions -----------------------------------------------------------------------------
@routes.post(VERSION)
async def create_version(request: web.Request) -> web.Response:
    req = await requester(request)
    algorithm, auth_data = _algorithm_and_auth_data(await json_body(request))
    version = await hs_of(request).room_keys.create_version(req.user_id, algorithm, auth_data)
    return json_response({"version": version})


@routes.get(VERSION)
async def get_current_version(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(await hs_of(request).room_keys.get_version(req.user_id, None))


@routes.get(VERSION + "/{version}")
async def get_version(request: web.Request) -> web.Response:
    req = await requester(request)
    info = await hs_of(request).room_keys.get_version(req.user_id, request.match_info["version"])
    return json_response(info)


@routes.put(VERSION + "/{version}")
async def update_version(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    algorithm, auth_data = _algorithm_and_auth_data(body)
    version = request.match_info["version"]
    if "version" in body and body["version"] != version:
        raise invalid_param("The version in the body does not match the path")
    await hs_of(request).room_keys.update_version(req.user_id, version, algorithm, auth_data)
    return json_response({})


@routes.delete(VERSION + "/{version}")
async def delete_version(request: web.Request) -> web.Response:
    req = await requester(request)
    await hs_of(request).room_keys.delete_version(req.user_id, request.match_info["version"])
    return json_response({})


# --- keys ---------------------------------------------------------------------------------
@routes.put(KEYS)
async def put_all_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    rooms = (await json_body(request)).get("rooms")
    if not isinstance(rooms, dict):
        raise bad_json("rooms must be an object")
    keys = {_room_id(r): _sessions(v) for r, v in rooms.items()}
    return json_response(await hs_of(request).room_keys.upload(req.user_id, version, keys))


@routes.put(KEYS + "/{room_id}")
async def put_room_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    room_id = _room_id(request.match_info["room_id"])
    keys = {room_id: _sessions(await json_body(request))}
    return json_response(await hs_of(request).room_keys.upload(req.user_id, version, keys))


@routes.put(KEYS + "/{room_id}/{session_id}")
async def put_session_key(request: web.Request) -> web.Response:
    req = await requester(request)
    version = _query_version(request)
    room_id = _room_id(request.match_info["room_id"])
    session_id = _session_id(request.match_info["session_id"])
    keys = {room_id: {session_id: _key_data(await json_body(request))}}
    return json_response(await hs_of(request).room_keys.upload(req.user_id, version, keys))


@routes.get(KEYS)
async def get_all_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    rooms = await hs_of(request).room_keys.get(req.user_id, _query_version(request))
    return json_response({"rooms": {r: {"sessions": s} for r, s in rooms.items()}})


@routes.get(KEYS + "/{room_id}")
async def get_room_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    room_id = request.match_info["room_id"]
    rooms = await hs_of(request).room_keys.get(req.user_id, _query_version(request), room_id)
    return json_response({"sessions": rooms.get(room_id, {})})


@routes.get(KEYS + "/{room_id}/{session_id}")
async def get_session_key(request: web.Request) -> web.Response:
    req = await requester(request)
    room_id, session_id = request.match_info["room_id"], request.match_info["session_id"]
    rooms = await hs_of(request).room_keys.get(req.user_id, _query_version(request), room_id,
                                               session_id)
    key = rooms.get(room_id, {}).get(session_id)
    if key is None:
        raise MatrixError(404, "M_NOT_FOUND", "Key not found.")
    return json_response(key)


@routes.delete(KEYS)
async def delete_all_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(await hs_of(request).room_keys.delete(req.user_id, _query_version(request)))


@routes.delete(KEYS + "/{room_id}")
async def delete_room_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    result = await hs_of(request).room_keys.delete(req.user_id, _query_version(request),
                                                   request.match_info["room_id"])
    return json_response(result)


@routes.delete(KEYS + "/{room_id}/{session_id}")
async def delete_session_key(request: web.Request) -> web.Response:
    req = await requester(request)
    result = await hs_of(request).room_keys.delete(
        req.user_id, _query_version(request), request.match_info["room_id"],
        request.match_info["session_id"])
    return json_response(result)
