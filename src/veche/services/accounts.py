"""Accounts: registration, passwords, login sessions, user-interactive auth."""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from veche.errors import MatrixError, forbidden
from veche.services.auth import hash_token, new_token, now_ms
from veche.storage import accounts as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

LOCALPART_RE = re.compile(r"^[a-z0-9._=/+-]+$")
_hasher = PasswordHasher()


class AccountService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.hs.server_name}"

    def check_localpart(self, localpart: str) -> str:
        if not LOCALPART_RE.match(localpart):
            raise MatrixError(400, "M_INVALID_USERNAME",
                              "User ID may only contain a-z, 0-9, and ._=-/+")
        user_id = self.user_id(localpart)
        if len(user_id.encode()) > 255:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        return user_id

    async def is_available(self, localpart: str) -> bool:
        user_id = self.check_localpart(localpart)
        return not await self.hs.db.run(store.user_exists, user_id)

    async def create_user(self, localpart: str, password: str | None, *, admin: bool = False) -> str:
        user_id = self.check_localpart(localpart)
        pw_hash = await asyncio.to_thread(_hasher.hash, password) if password else None

        def create(txn: Txn) -> None:
            if store.user_exists(txn, user_id):
                raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
            store.create_user(txn, user_id, pw_hash, now_ms(), admin=admin)

        await self.hs.db.run(create)
        return user_id

    async def check_password(self, user_id: str, password: str) -> bool:
        user = await self.hs.db.run(store.get_user, user_id)
        if user is None or user["deactivated"] or not user["password_hash"]:
            return False
        try:
            return await asyncio.to_thread(_hasher.verify, user["password_hash"], password)
        except (VerificationError, InvalidHashError):
            return False

    async def login_session(
        self, user_id: str, device_id: str | None, display_name: str | None, *,
        want_refresh: bool = False,
    ) -> dict[str, Any]:
        """Create (or reuse) a device and mint its tokens; the body of a login response."""
        device_id = device_id or secrets.token_urlsafe(8).upper().replace("-", "A").replace("_", "B")
        await self.hs.db.run(store.upsert_device, user_id, device_id, display_name, now_ms())
        lifetime = self.hs.config.access_token_lifetime_ms
        body: dict[str, Any] = {"user_id": user_id, "device_id": device_id,
                                "home_server": self.hs.server_name}
        refresh_hash = None
        if want_refresh:
            refresh = new_token("vrt")
            refresh_hash = hash_token(refresh)
            await self.hs.db.run(store.add_refresh_token, refresh_hash, user_id, device_id, now_ms())
            body["refresh_token"] = refresh
        body["access_token"] = await self.hs.auth.issue_access_token(
            user_id, device_id, refresh_token_hash=refresh_hash,
            lifetime_ms=lifetime if want_refresh else None,
        )
        if want_refresh and lifetime:
            body["expires_in_ms"] = lifetime
        body["well_known"] = {"m.homeserver": {"base_url": self.hs.config.base_url.rstrip("/")}}
        return body

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        old_hash = hash_token(refresh_token)
        row = await self.hs.db.run(store.get_refresh_token, old_hash)
        if row is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown refresh token", soft_logout=False)
        user_id, device_id = row
        new_refresh = new_token("vrt")
        new_hash = hash_token(new_refresh)

        def rotate(txn: Txn) -> list[str]:
            # The old refresh token and its access tokens stop working once rotated.
            store.delete_refresh_token(txn, old_hash)
            store.add_refresh_token(txn, new_hash, user_id, device_id, now_ms())
            return store.delete_access_tokens_for_refresh(txn, old_hash)

        self.hs.auth.invalidate(await self.hs.db.run(rotate))
        lifetime = self.hs.config.access_token_lifetime_ms
        access = await self.hs.auth.issue_access_token(
            user_id, device_id, refresh_token_hash=new_hash, lifetime_ms=lifetime
        )
        body: dict[str, Any] = {"access_token": access, "refresh_token": new_refresh}
        if lifetime:
            body["expires_in_ms"] = lifetime
        return body

    async def logout(self, user_id: str, device_id: str | None) -> None:
        def run(txn: Txn) -> list[str]:
            store.delete_refresh_tokens(txn, user_id, device_id)
            return store.delete_access_tokens(txn, user_id, device_id)

        self.hs.auth.invalidate(await self.hs.db.run(run))

    async def create_registration_token(
        self, token: str | None, uses_allowed: int | None, expiry_time: int | None
    ) -> str:
        token = token or secrets.token_urlsafe(12)
        await self.hs.db.run(store.add_registration_token, token, uses_allowed, expiry_time)
        return token

    async def registration_token_valid(self, token: str) -> bool:
        return bool(await self.hs.db.run(store.registration_token_usable, token, now_ms()))

    async def use_registration_token(self, token: str) -> None:
        if not await self.hs.db.run(store.consume_registration_token, token, now_ms()):
            raise MatrixError(401, "M_FORBIDDEN", "Invalid registration token")

    # --- user-interactive auth -----------------------------------------------------
    async def user_interactive_auth(
        self, body: dict[str, Any], flows: list[list[str]], uri: str, method: str,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Run the UIA state machine; returns the completed auth dict or raises a 401 body."""
        auth = body.get("auth")
        session_id = auth.get("session") if isinstance(auth, dict) else None
        completed: list[str] = []
        if isinstance(session_id, str):
            session = await self.hs.db.run(store.get_uia_session, session_id)
            if session is None:
                raise MatrixError(400, "M_UNKNOWN", "Unknown UIA session")
            if session["uri"] != uri or session["method"] != method:
                raise forbidden("UIA session was started for another request")
            completed = session["completed"]
        else:
            session_id = secrets.token_urlsafe(16)
            await self.hs.db.run(store.create_uia_session, session_id, uri, method, user_id,
                                 now_ms())
        error: MatrixError | None = None
        if isinstance(auth, dict) and isinstance(auth.get("type"), str):
            stage = auth["type"]
            try:
                if await self._complete_stage(stage, auth, user_id):
                    if stage not in completed:
                        completed.append(stage)
                        await self.hs.db.run(store.set_uia_completed, session_id, completed)
            except MatrixError as e:
                error = e
        elif auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, "M_BAD_JSON", "auth must be an object")
        for flow in flows:
            if all(stage in completed for stage in flow):
                await self.hs.db.run(store.delete_uia_session, session_id)
                return {"completed": completed, "session": session_id}
        params: dict[str, Any] = {}
        extra: dict[str, Any] = {"flows": [{"stages": f} for f in flows], "params": params,
                                 "session": session_id, "completed": completed}
        if error is not None:
            raise MatrixError(401, error.errcode, error.error, **extra)
        # The challenge that starts (or continues) a flow carries no errcode.
        raise MatrixError(401, "", "", **extra)

    async def _complete_stage(self, stage: str, auth: dict[str, Any], user_id: str | None) -> bool:
        if stage == "m.login.dummy":
            return True
        if stage == "m.login.password":
            identifier = auth.get("identifier")
            who = None
            if isinstance(identifier, dict) and identifier.get("type") == "m.id.user":
                who = identifier.get("user")
            elif isinstance(auth.get("user"), str):
                who = auth["user"]
            password = auth.get("password")
            if not isinstance(who, str) or not isinstance(password, str):
                raise MatrixError(400, "M_BAD_JSON", "m.login.password needs identifier and password")
            uid = who if who.startswith("@") else self.user_id(who)
            if user_id is not None and uid != user_id:
                raise forbidden("Invalid password")
            if not await self.check_password(uid, password):
                raise forbidden("Invalid password")
            return True
        if stage == "m.login.registration_token":
            token = auth.get("token")
            if not isinstance(token, str):
                raise MatrixError(400, "M_BAD_JSON", "token must be a string")
            await self.use_registration_token(token)
            return True
        raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown auth stage {stage}")
