"""GET /sync (spec: client-server API "Syncing")."""

from __future__ import annotations

from aiohttp import web

from veche.core.filters import Filter
from veche.core.numbers import parse_count
from veche.errors import MatrixError
from veche.http.base import (
    CLIENT_V3,
    hs_of,
    json_query_param,
    json_response,
    query_bool,
    query_int,
    requester,
)
from veche.services.presence import STATES
from veche.streams import StreamToken

routes = web.RouteTableDef()


# Inline filters parsed, by their text: a client sends the same one with every long-poll.
_INLINE: dict[str, Filter] = {}
_INLINE_SIZE = 1000


async def load_filter(request: web.Request, user_id: str, raw: str | None) -> Filter:
    if not raw:
        return Filter.default()
    if raw.lstrip().startswith("{"):
        parsed = _INLINE.get(raw)
        if parsed is not None:
            return parsed
        body = json_query_param(raw, "filter")
        try:
            parsed = Filter.from_json(body)
        except ValueError as e:
            raise MatrixError(400, "M_BAD_JSON", str(e)) from None
        if len(_INLINE) >= _INLINE_SIZE:
            _INLINE.clear()
        _INLINE[raw] = parsed
        return parsed
    filter_id = parse_count(raw)
    if filter_id is None:
        raise MatrixError(400, "M_INVALID_PARAM", "filter must be a filter ID or JSON")
    body = await hs_of(request).filters.get(user_id, filter_id)
    if body is None:
        raise MatrixError(404, "M_NOT_FOUND", "Unknown filter")
    try:
        return Filter.from_json(body)
    except ValueError as e:
        raise MatrixError(400, "M_BAD_JSON", str(e)) from None


@routes.get(CLIENT_V3 + "/sync")
async def sync(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    since_raw = request.query.get("since")
    since = StreamToken.parse(since_raw) if since_raw else None
    timeout = query_int(request, "timeout", 0, maximum=hs.config.limits.max_sync_timeout_ms) or 0
    full_state = query_bool(request, "full_state")
    set_presence = request.query.get("set_presence", "online")
    if set_presence not in STATES:
        raise MatrixError(400, "M_INVALID_PARAM", "set_presence must be online, offline or unavailable")
    sync_filter = await load_filter(request, req.user_id, request.query.get("filter"))
    if set_presence != "offline":
        await hs.presence.set_state(req.user_id, set_presence, from_sync=True)
        hs.presence.sync_started(req.user_id)
    try:
        return json_response(await hs.sync.sync(req, since, timeout, full_state, sync_filter))
    finally:
        if set_presence != "offline":
            hs.presence.sync_ended(req.user_id)
