"""Incoming federation requests: who sent them (X-Matrix, checked against the origin's key)
and the queries answered to other servers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from veche.core.federation_auth import XMatrixError, parse_x_matrix, verify_request
from veche.core.identifiers import InvalidIdentifier, parse_server_name
from veche.errors import MatrixError, forbidden, invalid_param
from veche.services.accounts import PROFILE_FIELDS

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)


def unauthorized(error: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", error)


class FederationService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

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
        self.hs.ratelimiter.check("federation", auth.origin)
        key = await self.hs.server_keys.get_verify_key(auth.origin, auth.key)
        if key is None:
            raise unauthorized(f"No current key {auth.key} of {auth.origin} could be found")
        if not verify_request(auth, key, method, uri, self.hs.server_name, content):
            raise unauthorized(f"Invalid signature by {auth.origin} with {auth.key}")
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
