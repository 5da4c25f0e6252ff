"""Request helpers shared by every endpoint module: JSON bodies, auth, responses."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from veche.core.json_limits import MAX_JSON_DEPTH, exact_int, json_shape, prune_too_deep
from veche.core.numbers import SAFE_INT_MAX, parse_int
from veche.errors import MatrixError, bad_json, invalid_param

if TYPE_CHECKING:
    from veche.server import HomeServer
    from veche.services.auth import Requester

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

logger = logging.getLogger(__name__)

CLIENT_V3 = "/_matrix/client/v3"
CLIENT_V1 = "/_matrix/client/v1"


def hs_of(request: web.Request) -> HomeServer:
    return request.app["hs"]  # type: ignore[no-any-return]


def json_response(body: Any, status: int = 200) -> web.Response:
    try:
        raw = orjson.dumps(body)
    except orjson.JSONEncodeError:
        raw = orjson.dumps(_servable(body))
    return web.Response(body=raw, status=status, content_type="application/json")


def _servable(body: Any) -> Any:
    """`body` without the stored items nested too deep to encode (stored before bodies were
    limited): one such item must not fail every /sync of its recipient."""
    pruned = prune_too_deep(body)
    for where in pruned.dropped:
        logger.warning("left out of a response, nested too deep to encode: %s", where)
    if pruned.unservable:
        logger.warning("cannot serve, nested too deep to encode: %s", ", ".join(pruned.unservable))
        raise MatrixError(404, "M_NOT_FOUND", "The requested item is stored in a form that cannot be served")
    return pruned.body


def _parse(raw: bytes | str, what: str) -> Any:
    """JSON that any response could carry again: M_NOT_JSON if unparseable, M_BAD_JSON if
    nested deeper than MAX_JSON_DEPTH or holding integers that would come back changed."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if "depth" in str(e):  # orjson's own limit, far past ours
            raise bad_json(f"{what} nested deeper than {MAX_JSON_DEPTH} levels") from None
        raise MatrixError(400, "M_NOT_JSON", f"{what} not JSON.") from None
    depth, floats = json_shape(value)
    if depth > MAX_JSON_DEPTH:
        raise bad_json(f"{what} nested deeper than {MAX_JSON_DEPTH} levels")
    if floats:  # perhaps integers too big to keep: read the numbers as written
        try:
            json.loads(raw, parse_int=exact_int)
        except ValueError as e:
            raise bad_json(f"{what}: {e}") from None
    return value


def client_ip(request: web.Request) -> str:
    """The client's address: the socket's peer, or behind a trusted reverse proxy
    (`listen.trusted_proxies`) the right-most X-Forwarded-For entry that is no trusted proxy.

    Entries left of that one are whatever the client claimed, so they are never believed.
    """
    cached = request.get("client_ip")
    if cached is None:
        cached = request["client_ip"] = _client_ip(request)
    return cached  # type: ignore[no-any-return]


def _client_ip(request: web.Request) -> str:
    peer = request.remote or ""
    trusted = hs_of(request).config.listen.trusted_proxies
    if not trusted:
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
    client = peer
    for hop in [peer, *reversed(hops)]:
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return client  # a malformed entry: the last trusted hop is all we know
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        client = str(address)
        if not any(address in net for net in trusted):
            return client
    return client


async def json_body(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object: M_NOT_JSON if unparseable, M_BAD_JSON if no object."""
    try:
        async with asyncio.timeout(hs_of(request).config.listen.body_timeout_s):
            raw = await request.read()
    except TimeoutError:  # a body sent a trickle at a time must not hold the handler forever
        raise MatrixError(408, "M_UNKNOWN", "The request body did not arrive in time") from None
    if not raw.strip():
        if allow_empty:
            return {}
        raise MatrixError(400, "M_NOT_JSON", "Content not JSON.")
    body = _parse(raw, "Content")
    if not isinstance(body, dict):
        raise bad_json("Body must be a JSON object")
    return body


async def requester(request: web.Request, *, allow_expired: bool = False,
                    allow_locked: bool = False) -> Requester:
    """The authenticated user of this request (M_MISSING_TOKEN / M_UNKNOWN_TOKEN otherwise;
    M_USER_LOCKED for a locked account, except where `allow_locked`: logging out)."""
    req = await _requester(request)
    if req.locked and not allow_locked:
        raise MatrixError(401, "M_USER_LOCKED", "This account has been locked", soft_logout=True)
    return req


def require_not_suspended(req: Requester) -> None:
    if req.suspended:
        raise MatrixError(403, "M_USER_SUSPENDED", "You cannot perform this action while suspended.")


async def _requester(request: web.Request) -> Requester:
    cached = request.get("requester")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token = access_token_of(request)
    if token is None:
        raise MatrixError(401, "M_MISSING_TOKEN", "Missing access token.")
    hs = hs_of(request)
    service = hs.appservices.for_token(token) if hs.config.app_service_config_files else None
    if service is not None:
        request["appservice"] = service
        req = await hs.appservices.requester(
            service, request.query.get("user_id"), request.query.get("device_id"))
    else:
        req = await hs.auth.get_requester(token)
    request["requester"] = req
    return req


def access_token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header.")
        return _storable_token(value.strip())
    # Deprecated in the spec but still sent by some clients and bots.
    token = request.query.get("access_token")
    return None if token is None else _storable_token(token)


def _storable_token(token: str) -> str:
    """Undecodable bytes (which aiohttp keeps as lone surrogates) are in no token we issued,
    and neither database could even look them up."""
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unrecognised access token.") from None
    return token


def query_int(
    request: web.Request, name: str, default: int | None = None, *, minimum: int = 0,
    maximum: int | None = None,
) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = parse_int(raw)
    if value is None:
        raise invalid_param(f"{name} must be an integer within ±{SAFE_INT_MAX}")
    if value < minimum:
        raise invalid_param(f"{name} must be >= {minimum}")
    if maximum is not None:
        value = min(value, maximum)
    return value


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise invalid_param(f"{name} must be true or false")


def require_str(body: dict[str, Any], key: str, *, optional: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        if optional:
            return None
        raise MatrixError(400, "M_MISSING_PARAM", f"Missing {key}")
    if not isinstance(value, str):
        raise bad_json(f"{key} must be a string")
    return value


def json_query_param(raw: str, name: str) -> Any:
    """A query parameter whose value is JSON (e.g. ``filter``): M_NOT_JSON if it isn't."""
    return _parse(raw, name)
