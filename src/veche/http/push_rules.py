"""Push rules (spec: client-server API "Push Rules")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from veche.core.push_rules import validate_actions
from veche.errors import MatrixError, bad_json
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester

routes = web.RouteTableDef()
RULE = CLIENT_V3 + "/pushrules/global/{kind}/{rule_id}"


def _parts(request: web.Request) -> tuple[str, str]:
    return request.match_info["kind"], request.match_info["rule_id"]


@routes.get(CLIENT_V3 + "/pushrules/")
async def get_rules(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response(await hs_of(request).push.get_ruleset(req.user_id))


@routes.get(CLIENT_V3 + "/pushrules/global/")
async def get_global(request: web.Request) -> web.Response:
    req = await requester(request)
    return json_response((await hs_of(request).push.get_ruleset(req.user_id))["global"])


@routes.get(RULE)
async def get_rule(request: web.Request) -> web.Response:
    req = await requester(request)
    kind, rule_id = _parts(request)
    return json_response(await hs_of(request).push.get_rule(req.user_id, kind, rule_id))


@routes.put(RULE)
async def put_rule(request: web.Request) -> web.Response:
    req = await requester(request)
    kind, rule_id = _parts(request)
    body = await json_body(request)
    hs = hs_of(request)
    await hs.push.put_rule(
        req.user_id, kind, rule_id, body, request.query.get("before"), request.query.get("after")
    )
    return json_response({})


@routes.delete(RULE)
async def delete_rule(request: web.Request) -> web.Response:
    req = await requester(request)
    kind, rule_id = _parts(request)
    await hs_of(request).push.delete_rule(req.user_id, kind, rule_id)
    return json_response({})


def _validate_enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise bad_json("enabled must be a boolean")
    return value


def _validate_actions(value: Any) -> list[Any]:
    try:
        return validate_actions(value)
    except ValueError as e:
        raise MatrixError(400, "M_INVALID_PARAM", str(e)) from None


def _attribute_routes(attr: str, validate: Callable[[Any], Any]) -> None:
    """GET and PUT of one attribute of a rule: /enabled and /actions."""

    async def get_attribute(request: web.Request) -> web.Response:
        req = await requester(request)
        kind, rule_id = _parts(request)
        rule = await hs_of(request).push.get_rule(req.user_id, kind, rule_id)
        return json_response({attr: rule[attr]})

    async def put_attribute(request: web.Request) -> web.Response:
        req = await requester(request)
        kind, rule_id = _parts(request)
        value = validate((await json_body(request)).get(attr))
        await hs_of(request).push.set_attribute(req.user_id, kind, rule_id, attr, value)
        return json_response({})

    routes.get(f"{RULE}/{attr}")(get_attribute)
    routes.put(f"{RULE}/{attr}")(put_attribute)


_attribute_routes("enabled", _validate_enabled)
_attribute_routes("actions", _validate_actions)
