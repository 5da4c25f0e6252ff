"""POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync: simplified sliding
sync (MSC4186), in the shape Synapse and Element X speak (services/sliding_sync/)."""

from __future__ import annotations

from aiohttp import web

from veche.core.sliding_sync import SlidingSyncRequest
from veche.errors import MatrixError
from veche.http.base import hs_of, json_body, json_response, query_int, requester

routes = web.RouteTableDef()

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"


@routes.post(PATH)
async def sliding_sync(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    body = await json_body(request)
    try:
        parsed = SlidingSyncRequest.from_json(body)
    except ValueError as e:
        raise MatrixError(400, "M_BAD_JSON", str(e)) from None
    pos = request.query.get("pos") or None
    timeout = query_int(request, "timeout", 0, maximum=hs.config.limits.max_sync_timeout_ms) or 0
    return json_response(await hs.sliding_sync.sync(req, parsed, pos, timeout))
