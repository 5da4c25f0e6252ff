"""Key exchange (server-server API "Retrieving server keys"): our keys, and as a notary other
servers' keys countersigned by us. Served only with [federation] enabled."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche.core.identifiers import is_valid_server_name
from veche.errors import bad_json, invalid_param
from veche.http.base import client_ip, hs_of, json_body, json_response, query_int

MAX_NOTARY_SERVERS = 100  # servers per key query

federation_routes = web.RouteTableDef()
KEY_V2 = "/_matrix/key/v2"


@federation_routes.get(KEY_V2 + "/server")
@federation_routes.get(KEY_V2 + "/server/{key_id}")  # deprecated form: the same answer
async def server_keys(request: web.Request) -> web.Response:
    return json_response(hs_of(request).server_keys.own_response())


@federation_routes.get(KEY_V2 + "/query/{server_name}")
async def query_one(request: web.Request) -> web.Response:
    server_name = request.match_info["server_name"]
    minimum = query_int(request, "minimum_valid_until_ts")
    criteria = {} if minimum is None else {"": {"minimum_valid_until_ts": minimum}}
    return await _query(request, {server_name: criteria})


@federation_routes.post(KEY_V2 + "/query")
async def query_many(request: web.Request) -> web.Response:
    body = await json_body(request)
    server_keys = body.get("server_keys")
    if not isinstance(server_keys, dict):
        raise bad_json("server_keys must be an object")
    for criteria in server_keys.values():
        if not isinstance(criteria, dict):
            raise bad_json("server_keys values must be objects of key IDs")
    return await _query(request, server_keys)


async def _query(request: web.Request, criteria: dict[str, Any]) -> web.Response:
    hs = hs_of(request)
    if len(criteria) > MAX_NOTARY_SERVERS:
        raise invalid_param(f"At most {MAX_NOTARY_SERVERS} servers per query")
    hs.ratelimiter.check("key_query", client_ip(request))
    criteria = {name: keys for name, keys in criteria.items() if is_valid_server_name(name)}
    # "" stands for "any key" in the GET form: only the minimum validity matters.
    return json_response({"server_keys": await hs.server_keys.query(criteria)})
