"""Server administration (spec: client-server API "Server Administration": whois, and
"Account moderation": locking and suspending accounts). For server admins only, except
that users may look themselves up."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche import __version__
from veche.errors import bad_json, invalid_param
from veche.http.base import (
    CLIENT_V1,
    CLIENT_V3,
    hs_of,
    json_body,
    json_response,
    query_int,
    requester,
)
from veche.services.auth import Requester

routes = web.RouteTableDef()


@routes.get(CLIENT_V3 + "/admin/whois/{user_id}")
async def whois(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(await hs_of(request).admin.whois(req.user_id, request.match_info["user_id"]))


def _moderation(flag: str) -> tuple[Any, Any]:
    async def get(request: web.Request) -> web.Response:
        req = await requester(request)
        locked, suspended = await hs_of(request).admin.moderation(
            req.user_id, request.match_info["user_id"])
        return json_response({flag: locked if flag == "locked" else suspended})

    async def put(request: web.Request) -> web.Response:
        req = await requester(request)
        await hs_of(request).admin.require_admin(req.user_id)
        body = await json_body(request)
        value = body.get(flag)
        if not isinstance(value, bool):
            raise bad_json(f"{flag} must be a boolean")
        await hs_of(request).admin.set_moderation(
            req.user_id, request.match_info["user_id"], flag, value)
        return json_response({flag: value})

    return get, put


for _flag, _path in (("locked", "lock"), ("suspended", "suspend")):
    _get, _put = _moderation(_flag)
    routes.get(f"{CLIENT_V1}/admin/{_path}/{{user_id}}")(_get)
    routes.put(f"{CLIENT_V1}/admin/{_path}/{{user_id}}")(_put)


# --- Synapse's admin API (/_synapse/admin): admin_users.py, admin_rooms.py, admin_content.py ---
SYNAPSE_ADMIN = "/_synapse/admin"


async def admin_requester(request: web.Request) -> Requester:
    """The request's user, who must be a server admin (403 M_FORBIDDEN otherwise)."""
    req = await requester(request)
    await hs_of(request).admin.require_admin(req.user_id)
    return req


def paging(request: web.Request, default_limit: int = 100) -> tuple[int, int]:
    """`from` and `limit` of Synapse's offset-paginated lists."""
    start = query_int(request, "from", 0)
    limit = query_int(request, "limit", default_limit, maximum=10_000)
    assert start is not None and limit is not None
    return start, limit


def direction(request: web.Request, default: str = "f") -> bool:
    """Whether `dir` asks for backwards order."""
    value = request.query.get("dir", default)
    if value not in ("f", "b"):
        raise invalid_param("dir must be f or b")
    return value == "b"


@routes.get(SYNAPSE_ADMIN + "/v1/server_version")
async def server_version(request: web.Request) -> web.Response:
    # Open to anyone, as Synapse's is.
    return json_response({"server_version": f"Veche {__version__}"})
