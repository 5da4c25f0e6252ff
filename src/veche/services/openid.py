"""OpenID tokens (spec: client-server API "OpenID"): they prove who the user is to a third
party and nothing more; the third party learns only the user ID."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from veche.services.auth import hash_token
from veche.storage import accounts as store

if TYPE_CHECKING:
    from veche.server import HomeServer

LIFETIME_S = 3600


class OpenIdService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def request_token(self, user_id: str, device_id: str | None) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        now = int(time.time() * 1000)
        await self.hs.db.run(store.add_openid_token, hash_token(token), user_id, device_id,
                             now + LIFETIME_S * 1000, now)
        return {"access_token": token, "token_type": "Bearer",
                "matrix_server_name": self.hs.server_name, "expires_in": LIFETIME_S}

    async def user_of(self, token: str) -> str | None:
        user_id: str | None = await self.hs.db.run(
            store.get_openid_user, hash_token(token), int(time.time() * 1000))
        return user_id
