"""Access tokens: minted as random secrets, stored only as SHA-256, checked per request."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from veche.errors import MatrixError
from veche.storage import accounts

if TYPE_CHECKING:
    from veche.server import HomeServer


@dataclass(frozen=True, slots=True)
class Requester:
    user_id: str
    device_id: str
    access_token_hash: str
    locked: bool = False
    suspended: bool = False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def now_ms() -> int:
    return int(time.time() * 1000)


class AuthService:
    # A small cache of token hash -> (user, device, expiry): every request checks a token.
    _CACHE_MAX = 50_000

    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._cache: dict[str, tuple[str, str, int | None, bool, bool]] = {}

    async def get_requester(self, token: str) -> Requester:
        token_hash = hash_token(token)
        entry = self._cache.get(token_hash)
        if entry is None:
            row = await self.hs.db.run(accounts.get_access_token, token_hash)
            if row is None:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown access token.", soft_logout=False)
            entry = (*row[:3], row[4], row[5])
            if row[3] is not None:
                # The first use of an access token from /refresh ends the refresh token
                # it replaced (after a restart this runs again, finding nothing to revoke).
                await self.hs.accounts.access_token_first_used(row[3])
            if len(self._cache) >= self._CACHE_MAX:
                self._cache.clear()
            self._cache[token_hash] = entry
        user_id, device_id, valid_until, locked, suspended = entry
        if valid_until is not None and valid_until < now_ms():
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Access token has expired.", soft_logout=True)
        return Requester(user_id, device_id, token_hash, locked, suspended)

    def invalidate(self, token_hashes: list[str] | None = None) -> None:
        """Forget cached tokens (all of them when None) after logout or deactivation."""
        if token_hashes is None:
            self._cache.clear()
        else:
            for h in token_hashes:
                self._cache.pop(h, None)

    async def issue_access_token(
        self, user_id: str, device_id: str, *, refresh_token_hash: str | None = None,
        lifetime_ms: int | None = None,
    ) -> str:
        token = new_token("vat")
        ts = now_ms()
        valid_until = ts + lifetime_ms if lifetime_ms else None
        await self.hs.db.run(
            accounts.add_access_token, hash_token(token), user_id, device_id, ts, valid_until,
            refresh_token_hash,
        )
        return token
