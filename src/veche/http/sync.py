"""GET /sync (spec: client-server API "Syncing")."""

from __future__ import annotations

import orjson
from aiohttp import web

from veche.errors import MatrixError, bad_json
from veche.http.base import CLIENT_V3, hs_of, json_response, query_bool, query_int, requester
from veche.storage import sync as store
from veche.streams import StreamToken

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/sync")
async def sync(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    since_raw = request.query.get("since")
    since = StreamToken.parse(since_raw) if since_raw else None
    timeout = query_int(request, "timeout", 0, maximum=hs.config.limits.max_sync_timeout_ms) or 0
    full_state = query_bool(request, "full_state")
    set_presence = request.query.get("set_presence", "online")
    if set_presence not in ("online", "offline", "unavailable"):
        raise MatrixError(400, "M_INVALID_PARAM", "set_presence must be online, offline or unavailable")
    raw_filter = request.query.get("filter")
    sync_filter: dict[str, object] = {}
    if raw_filter:
        if raw_filter.lstrip().startswith("{"):
            try:
                sync_filter = orjson.loads(raw_filter)
            except orjson.JSONDecodeError:
                raise MatrixError(400, "M_NOT_JSON", "filter is not valid JSON") from None
            if not isinstance(sync_filter, dict):
                raise bad_json("filter must be an object")
        else:
            try:
                filter_id = int(raw_filter)
            except ValueError:
                raise MatrixError(400, "M_INVALID_PARAM", "filter must be an ID or JSON") from None
            found = await hs.db.run(store.get_filter, req.user_id, filter_id)
            if found is None:
                raise MatrixError(404, "M_NOT_FOUND", "Unknown filter")
            sync_filter = found
    return json_response(await hs.sync.sync(req, since, timeout, full_state, sync_filter))
