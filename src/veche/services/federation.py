"""Incoming federation requests: who sent them (X-Matrix, checked against the origin's key)
and the queries answered to other servers."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from veche.core.federation_auth import XMatrixError, parse_x_matrix, verify_request
from veche.core.identifiers import InvalidIdentifier, parse_server_name, parse_user_id
from veche.errors import MatrixError, forbidden, invalid_param, not_found
from veche.federation.errors import FederationDenied, FederationError, HttpResponseError, path
from veche.services.accounts import PROFILE_FIELDS

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)
PROFILE_CACHE_S = 60  # remote profiles change seldom; their member events carry changes too
PROFILE_CACHE_SIZE = 10_000


def unauthorized(error: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", error)


class FederationService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._profiles: dict[str, tuple[float, dict[str, Any]]] = {}

    async def authenticate(self, method: str, uri: str, authorization: str | None,
                           content: Any) -> str:
        """The origin server of a request whose X-Matrix signature checks out.

        `uri` is the request target as received (path and query, still percent-encoded):
        what the origin signed. 401 M_UNAUTHORIZED for a missing, malformed, misaddressed or
        badly signed request; 403 M_FORBIDDEN for an origin we do not federate with.
        """
        if not authorization:
            raise unauthorized("Missing Authorization header")
        try:
            auth = parse_x_matrix(authorization)
            parse_server_name(auth.origin)
        except (XMatrixError, InvalidIdentifier) as e:
            raise unauthorized(f"Bad X-Matrix Authorization header: {e}") from None
        if auth.destination is not None and auth.destination != self.hs.server_name:
            raise unauthorized(f"Request is for {auth.destination}, not this server")
        if auth.origin == self.hs.server_name:
            raise unauthorized("Request claims to come from this server")
        if not self.hs.federation_client.allowed(auth.origin):
            raise forbidden(f"This server does not federate with {auth.origin}")
        # Key fetches are bounded per server by the key service; the rate limit comes after
        # the signature, so nobody can use up another server's allowance by naming it.
        key = await self.hs.server_keys.get_verify_key(auth.origin, auth.key)
        if key is None:
            raise unauthorized(f"No current key {auth.key} of {auth.origin} could be found")
        if not verify_request(auth, key, method, uri, self.hs.server_name, content):
            raise unauthorized(f"Invalid signature by {auth.origin} with {auth.key}")
        self.hs.ratelimiter.check("federation", auth.origin)
        # It is up: a queue backing off from it resumes at once.
        self.hs.federation_sender.heard_from(auth.origin)
        return auth.origin

    async def query_profile(self, user_id: str, field: str | None) -> dict[str, Any]:
        if not user_id.endswith(":" + self.hs.server_name):
            raise invalid_param("The user is not on this server")
        profile: dict[str, Any] = await self.hs.accounts.get_profile(user_id)
        if field is not None:
            if field not in PROFILE_FIELDS:
                return {}
            return {field: profile[field]} if field in profile else {}
        return profile

    def is_local(self, user_id: str) -> bool:
        try:
            return parse_user_id(user_id)[1] == self.hs.server_name
        except InvalidIdentifier:
            return True  # not a user ID at all: the local lookup answers "not found"

    async def remote_profile(self, user_id: str, field: str | None, client: str) -> dict[str, Any]:
        """Another server's user's profile, asked from that server (/query/profile); the
        whole profile is asked for and kept PROFILE_CACHE_S seconds."""
        cached = self._profiles.get(user_id)
        if cached is not None and cached[0] > time.monotonic():
            return _field_of(cached[1], field)
        server = parse_user_id(user_id)[1]
        # Anyone may ask for a profile: bound how many requests they can make us send.
        self.hs.ratelimiter.check("profile", f"remote:{client}")
        query = {"user_id": user_id}
        try:
            answer = await self.hs.federation_client.get_json(
                server, path("/_matrix/federation/v1/query/profile", query=query), timeout_s=30)
        except FederationDenied:
            raise not_found("Profile not found") from None
        except HttpResponseError as e:
            if e.status == 403:
                raise forbidden(f"{server} does not disclose this profile") from None
            raise not_found("Profile not found") from None
        except FederationError as e:
            # The spec's answers here are 403 and 404: an unreachable server has no profile
            # we can give.
            logger.info("profile of %s: %s", user_id, e)
            raise not_found(f"Profile not found: could not reach {server}") from None
        profile = {k: v for k, v in answer.items() if isinstance(v, str)} \
            if isinstance(answer, dict) else {}
        if len(self._profiles) >= PROFILE_CACHE_SIZE:
            self._profiles.clear()
        self._profiles[user_id] = (time.monotonic() + PROFILE_CACHE_S, profile)
        return _field_of(profile, field)


def _field_of(profile: dict[str, Any], field: str | None) -> dict[str, Any]:
    if field is not None:
        return {field: profile[field]} if field in profile else {}
    return dict(profile)
