"""Synapse's admin API for content: a user's media, deleting and quarantining media,
registration tokens, event reports and server notices (Synapse's docs/admin_api/
media_admin_api.md, registration_tokens.md, event_reports.md, server_notices.md). Server
admins only."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from veche.errors import MatrixError
from veche.http.admin import SYNAPSE_ADMIN, admin_requester, direction, paging
from veche.http.base import hs_of, json_body, json_response, query_bool, query_int

routes = web.RouteTableDef()

V1 = SYNAPSE_ADMIN + "/v1"


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- media -------------------------------------------------------------------------------------

@routes.get(V1 + "/users/{user_id}/media")
async def user_media(request: web.Request) -> web.Response:
    await admin_requester(request)
    start, limit = paging(request)
    return json_response(await hs_of(request).admin_content.user_media(
        request.match_info["user_id"], start, limit, request.query.get("order_by"),
        request.query.get("dir")))


@routes.delete(V1 + "/media/{server_name}/{media_id}")
async def delete_media(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_content.delete_media(
        request.match_info["server_name"], request.match_info["media_id"]))


async def _delete_before(request: web.Request) -> web.Response:
    await admin_requester(request)
    before_ts = query_int(request, "before_ts")
    if before_ts is None:
        raise MatrixError(400, "M_MISSING_PARAM", "before_ts is required")
    if before_ts < 30_000_000_000:
        # Synapse's guard: a timestamp in seconds would delete nothing, silently.
        raise MatrixError(400, "M_INVALID_PARAM", "before_ts must be in milliseconds")
    size_gt = query_int(request, "size_gt", 0) or 0
    query_bool(request, "keep_profiles", True)
    return json_response(await hs_of(request).admin_content.delete_media_before(before_ts, size_gt))


routes.post(V1 + "/media/delete")(_delete_before)


@routes.post(V1 + "/media/{server_name}/delete")
async def delete_media_before_deprecated(request: web.Request) -> web.Response:
    if request.match_info["server_name"] != hs_of(request).server_name:
        await admin_requester(request)
        raise MatrixError(400, "M_INVALID_PARAM", "Can only delete local media")
    return await _delete_before(request)


def _quarantine(quarantined: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        req = await admin_requester(request)
        await json_body(request, allow_empty=True)
        await hs_of(request).admin_content.quarantine(
            req.user_id, request.match_info["server_name"], request.match_info["media_id"],
            quarantined)
        return json_response({})

    return handler


routes.post(V1 + "/media/quarantine/{server_name}/{media_id}")(_quarantine(True))
routes.post(V1 + "/media/unquarantine/{server_name}/{media_id}")(_quarantine(False))


# --- registration tokens -----------------------------------------------------------------------

@routes.get(V1 + "/registration_tokens")
async def list_tokens(request: web.Request) -> web.Response:
    await admin_requester(request)
    valid = None if "valid" not in request.query else query_bool(request, "valid")
    return json_response(await hs_of(request).admin_content.list_tokens(valid, _now_ms()))


@routes.post(V1 + "/registration_tokens/new")
async def create_token(request: web.Request) -> web.Response:
    await admin_requester(request)
    body = await json_body(request, allow_empty=True)
    return json_response(await hs_of(request).admin_content.create_token(body, _now_ms()))


@routes.get(V1 + "/registration_tokens/{token}")
async def get_token(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_content.get_token(request.match_info["token"]))


@routes.put(V1 + "/registration_tokens/{token}")
async def update_token(request: web.Request) -> web.Response:
    await admin_requester(request)
    body = await json_body(request)
    return json_response(await hs_of(request).admin_content.update_token(
        request.match_info["token"], body, _now_ms()))


@routes.delete(V1 + "/registration_tokens/{token}")
async def delete_token(request: web.Request) -> web.Response:
    await admin_requester(request)
    await hs_of(request).admin_content.delete_token(request.match_info["token"])
    return json_response({})


# --- event reports -----------------------------------------------------------------------------

@routes.get(V1 + "/event_reports")
async def event_reports(request: web.Request) -> web.Response:
    await admin_requester(request)
    start, limit = paging(request)
    return json_response(await hs_of(request).admin_content.event_reports(
        start, limit, direction(request, "b"), request.query.get("user_id"),
        request.query.get("room_id"), request.query.get("event_sender_user_id")))


@routes.get(V1 + "/event_reports/{report_id}")
async def event_report(request: web.Request) -> web.Response:
    await admin_requester(request)
    return json_response(await hs_of(request).admin_content.event_report(
        request.match_info["report_id"]))


@routes.delete(V1 + "/event_reports/{report_id}")
async def dismiss_event_report(request: web.Request) -> web.Response:
    await admin_requester(request)
    await hs_of(request).admin_content.delete_event_report(request.match_info["report_id"])
    return json_response({})


# --- server notices ----------------------------------------------------------------------------

@routes.post(V1 + "/send_server_notice")
async def send_server_notice(request: web.Request) -> web.Response:
    await admin_requester(request)
    event_id = await hs_of(request).admin_content.send_server_notice(
        await json_body(request), None)
    return json_response({"event_id": event_id})


@routes.put(V1 + "/send_server_notice/{txn_id}")
async def send_server_notice_txn(request: web.Request) -> web.Response:
    req = await admin_requester(request)
    event_id = await hs_of(request).admin_content.send_server_notice(
        await json_body(request), (f"admin:{req.user_id}", request.match_info["txn_id"]))
    return json_response({"event_id": event_id})
