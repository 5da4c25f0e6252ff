"""End-to-end encryption key management and cross-signing (spec: client-server API
"End-to-End Encryption": /keys/upload, /keys/query, /keys/claim, /keys/changes,
/keys/device_signing/upload, /keys/signatures/upload)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.core.numbers import is_safe_int
from veche.errors import MatrixError, bad_json, missing_param
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester
from veche.streams import StreamToken

routes = web.RouteTableDef()
UIA_FLOWS = [["m.login.password"]]


def _user_map(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        raise missing_param(f"Missing {name}")
    if not isinstance(value, dict):
        raise bad_json(f"{name} must be an object")
    return value


def _check_timeout(body: dict[str, Any]) -> None:
    timeout = body.get("timeout")
    if timeout is not None and not is_safe_int(timeout):
        raise bad_json("timeout must be an integer")


@routes.post(CLIENT_V3 + "/keys/upload")
async def upload_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    if not req.device_id:  # an application service acting without a device_id
        raise MatrixError(400, "M_UNKNOWN_DEVICE", "Keys belong to a device: name one with device_id")
    body = await json_body(request)
    counts = await hs_of(request).e2e_keys.upload(req.user_id, req.device_id, body)
    return json_response({"one_time_key_counts": counts})


@routes.post(CLIENT_V3 + "/keys/query")
async def query_keys(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    _check_timeout(body)
    wanted = _user_map(body, "device_keys")
    for devices in wanted.values():
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise bad_json("device_keys values must be lists of device IDs")
    return json_response(await hs_of(request).e2e_keys.query(
        req.user_id, wanted, timeout_ms=body.get("timeout")))


@routes.post(CLIENT_V3 + "/keys/claim")
async def claim_keys(request: web.Request) -> web.Response:
    await requester(request)
    body = await json_body(request)
    _check_timeout(body)
    wanted = _user_map(body, "one_time_keys")
    for devices in wanted.values():
        if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
            raise bad_json("one_time_keys values must map device IDs to algorithms")
    return json_response(await hs_of(request).e2e_keys.claim(
        wanted, timeout_ms=body.get("timeout")))


@routes.get(CLIENT_V3 + "/keys/changes")
async def key_changes(request: web.Request) -> web.Response:
    req = await requester(request)
    raw_from, raw_to = request.query.get("from"), request.query.get("to")
    if raw_from is None or raw_to is None:
        raise missing_param("from and to are required")
    since, upto = StreamToken.parse(raw_from), StreamToken.parse(raw_to)
    changed, left = await hs_of(request).e2e_keys.changes(req.user_id, since.stream, upto.stream)
    return json_response({"changed": changed, "left": left})


@routes.post(CLIENT_V3 + "/keys/device_signing/upload")
async def upload_cross_signing_keys(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    body = await json_body(request)
    for name in ("master_key", "self_signing_key", "user_signing_key"):
        if name in body and not isinstance(body[name], dict):
            raise bad_json(f"{name} must be an object")
    kind = await hs.e2e_keys.cross_signing_upload_kind(req.user_id, body)
    if kind == "same":
        return json_response({})
    if kind == "replace":
        await hs.accounts.user_interactive_auth(
            body, UIA_FLOWS, "/keys/device_signing/upload", "POST", user_id=req.user_id)
    await hs.e2e_keys.upload_cross_signing(req.user_id, body)
    return json_response({})


@routes.post(CLIENT_V3 + "/keys/signatures/upload")
async def upload_signatures(request: web.Request) -> web.Response:
    req = await requester(request)
    body = await json_body(request)
    return json_response(await hs_of(request).e2e_keys.upload_signatures(req.user_id, body))
