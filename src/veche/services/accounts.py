"""Accounts: registration, passwords, login sessions, devices, profiles, user-interactive auth.

Spec: client-server API "Client Authentication" (user-interactive auth, legacy login and
registration, refresh tokens, logout), "Account management", "Device management" and
"Profiles".
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import string
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from veche.errors import MatrixError, forbidden, not_found
from veche.services.auth import hash_token, new_token, now_ms
from veche.storage import accounts as store
from veche.storage import events as event_store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

# User identifier localpart grammar (appendices "User Identifiers").
LOCALPART_RE = re.compile(r"^[a-z0-9._=/+-]+$")
# Opaque identifier grammar, at most 64 characters (m.login.registration_token).
REGISTRATION_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
PROFILE_FIELDS = ("displayname", "avatar_url")
MAX_DISPLAYNAME_LEN = 256
MAX_AVATAR_URL_LEN = 1000
MAX_PASSWORD_LEN = 512
UIA_SESSION_LIFETIME_MS = 24 * 3600 * 1000
_hasher = PasswordHasher()
_DEVICE_ALPHABET = string.ascii_uppercase


def _new_device_id() -> str:
    return "".join(secrets.choice(_DEVICE_ALPHABET) for _ in range(10))


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


class AccountService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    # --- identifiers ------------------------------------------------------------------
    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.hs.server_name}"

    def check_localpart(self, localpart: str) -> str:
        """The user ID for a new account's localpart, or M_INVALID_USERNAME."""
        if not localpart or not LOCALPART_RE.match(localpart):
            raise MatrixError(400, "M_INVALID_USERNAME",
                              "User ID may only contain a-z, 0-9, and ._=-/+")
        user_id = self.user_id(localpart)
        if len(user_id.encode()) > 255:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        return user_id

    def resolve_user(self, who: str) -> str | None:
        """A login identifier (localpart or full MXID) as one of our user IDs, or None."""
        if who.startswith("@"):
            localpart, sep, server = who[1:].partition(":")
            if not sep or server != self.hs.server_name or not localpart:
                return None
            return self.user_id(localpart.lower())
        return self.user_id(who.lower()) if who else None

    async def is_available(self, localpart: str) -> bool:
        user_id = self.check_localpart(localpart)
        if localpart == self.hs.config.server_notices.system_mxid_localpart:
            return False  # the server notices' sender, made on first use: nobody may take it
        return not await self.hs.db.run(store.user_exists, user_id)

    # --- accounts ---------------------------------------------------------------------
    async def create_user(
        self, localpart: str, password: str | None, *, admin: bool = False,
        registration_token: str | None = None,
    ) -> str:
        """Create an account; M_USER_IN_USE if taken. A registration token given here is
        counted as used in the same transaction (it was validated by the UIA stage)."""
        user_id = self.check_localpart(localpart)
        if password is not None and len(password) > MAX_PASSWORD_LEN:
            raise MatrixError(400, "M_INVALID_PARAM", "Password too long")
        pw_hash = await hash_password(password) if password else None

        def create(txn: Txn) -> None:
            if store.user_exists(txn, user_id):
                raise MatrixError(400, "M_USER_IN_USE", "User ID already taken.")
            if registration_token is not None and not store.consume_registration_token(
                txn, registration_token, now_ms()
            ):
                raise MatrixError(401, "M_FORBIDDEN", "Registration token no longer valid")
            # As in Synapse, a new account is named by its localpart until it picks a name,
            # so clients show "alice", not "@alice:example.org".
            store.create_user(txn, user_id, pw_hash, now_ms(), admin=admin, displayname=localpart)

        await self.hs.db.run(create)
        return user_id

    async def generate_localpart(self) -> str:
        for _ in range(20):
            localpart = f"u{secrets.token_hex(5)}"
            if await self.is_available(localpart):
                return localpart
        raise MatrixError(500, "M_UNKNOWN", "Could not generate a user ID")

    async def check_password(self, user_id: str, password: str) -> bool:
        user = await self.hs.db.run(store.get_user, user_id)
        if user is None or user["deactivated"] or not user["password_hash"]:
            return False
        try:
            return await asyncio.to_thread(_hasher.verify, user["password_hash"], password)
        except (VerificationError, InvalidHashError):
            return False

    async def login(
        self, who: str, password: str, device_id: str | None, display_name: str | None, *,
        want_refresh: bool, ip: str,
    ) -> dict[str, Any]:
        """m.login.password: 403 M_FORBIDDEN for an unknown user or a wrong password.

        Failures are limited per (account, address) and, more generously, per account: a
        stranger's guesses use up the stranger's budget, not the owner's elsewhere.
        """
        limiter = self.hs.ratelimiter
        await limiter.acheck("login", ip)
        user_id = self.resolve_user(who)
        if user_id is None:
            raise forbidden("Invalid username or password")
        from_here = f"{user_id} {ip}"
        await limiter.aensure("login_failures", from_here)
        await limiter.aensure("login_failures_account", user_id)
        # A deactivated account answers as an unknown one (as Synapse's does: deactivation
        # drops the password), so a stranger cannot learn which accounts existed.
        if not await self.check_password(user_id, password):
            await limiter.atake("login_failures", from_here)
            await limiter.atake("login_failures_account", user_id)
            raise forbidden("Invalid username or password")
        return await self.login_session(user_id, device_id, display_name,
                                        want_refresh=want_refresh, ip=ip)

    async def login_session(
        self, user_id: str, device_id: str | None, display_name: str | None, *,
        want_refresh: bool = False, ip: str | None = None,
    ) -> dict[str, Any]:
        """Create (or reuse) a device and mint its tokens; the body of a login response.

        Reusing a device ID invalidates the tokens previously issued to that device.
        """
        device_id = device_id or _new_device_id()
        lifetime = self.hs.config.access_token_lifetime_ms if want_refresh else None
        access = new_token("vat")
        refresh = new_token("vrt") if want_refresh else None
        ts = now_ms()

        def run(txn: Txn) -> list[str]:
            revoked: list[str] = []
            if not store.upsert_device(txn, user_id, device_id, display_name, ts):
                revoked = store.delete_access_tokens(txn, user_id, device_id)
                store.delete_refresh_tokens(txn, user_id, device_id)
            store.touch_device(txn, user_id, device_id, ip, ts)
            refresh_hash = hash_token(refresh) if refresh else None
            if refresh_hash:
                store.add_refresh_token(txn, refresh_hash, user_id, device_id, ts)
            store.add_access_token(txn, hash_token(access), user_id, device_id, ts,
                                   ts + lifetime if lifetime else None, refresh_hash)
            return revoked

        self.hs.auth.invalidate(await self.hs.db.run(run))
        body: dict[str, Any] = {"user_id": user_id, "device_id": device_id,
                                "access_token": access, "home_server": self.hs.server_name}
        if refresh:
            body["refresh_token"] = refresh
            if lifetime:
                body["expires_in_ms"] = lifetime
        body["well_known"] = {"m.homeserver": {"base_url": self.hs.config.base_url.rstrip("/")}}
        return body

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        """Rotate a refresh token (spec "Refreshing access tokens").

        The old refresh token stays usable until its successor is used (so a client that
        lost the response can retry); using the old one again replaces the unused
        successor. The access tokens of the old refresh token end at once.
        """
        old_hash = hash_token(refresh_token)
        new_refresh, access = new_token("vrt"), new_token("vat")
        new_hash = hash_token(new_refresh)
        lifetime = self.hs.config.access_token_lifetime_ms
        ts = now_ms()

        def rotate(txn: Txn) -> list[str] | None:
            info = store.get_refresh_token_info(txn, old_hash)
            if info is None:
                return None
            user_id, device_id, unused_successor = info
            revoked: list[str] = []
            # Using this token proves the client has it: its predecessors are revoked.
            revoked += store.revoke_refresh_predecessors(txn, old_hash)
            if unused_successor is not None:
                store.delete_refresh_token(txn, unused_successor)
                revoked += store.delete_access_tokens_for_refresh(txn, unused_successor)
            revoked += store.delete_access_tokens_for_refresh(txn, old_hash)
            store.add_refresh_token(txn, new_hash, user_id, device_id, ts)
            store.set_refresh_next(txn, old_hash, new_hash)
            store.add_access_token(txn, hash_token(access), user_id, device_id, ts,
                                   ts + lifetime if lifetime else None, new_hash)
            return revoked

        revoked = await self.hs.db.run(rotate)
        if revoked is None:
            raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown refresh token", soft_logout=False)
        self.hs.auth.invalidate(revoked)
        body: dict[str, Any] = {"access_token": access, "refresh_token": new_refresh}
        if lifetime:
            body["expires_in_ms"] = lifetime
        return body

    async def access_token_first_used(self, refresh_token_hash: str) -> None:
        """Call when an access token minted with a refresh token is first used: the refresh
        token it replaced is revoked (spec: valid "until the new access token or refresh
        token is used")."""
        self.hs.auth.invalidate(
            await self.hs.db.run(store.revoke_refresh_predecessors, refresh_token_hash)
        )

    async def logout(self, user_id: str, device_id: str | None) -> None:
        """End one device's session (or all of the user's): the devices go with it."""
        await self.delete_devices(user_id, None if device_id is None else [device_id])

    async def delete_devices(
        self, user_id: str, device_ids: list[str] | None, *, except_device: str | None = None
    ) -> None:
        with self.hs.stream.get_next() as pos:
            hashes = await self.hs.db.run(lambda t: store.delete_devices(
                t, user_id, device_ids, except_device=except_device, stream_pos=pos))
        self.hs.auth.invalidate(hashes)
        await self.hs.e2e_keys.notify_changed(user_id)

    async def change_password(
        self, user_id: str, new_password: str, *, logout_devices: bool, keep_device: str | None
    ) -> None:
        if len(new_password) > MAX_PASSWORD_LEN:
            raise MatrixError(400, "M_INVALID_PARAM", "Password too long")
        pw_hash = await hash_password(new_password)

        def run(txn: Txn, pos: int) -> list[str]:
            store.set_password_hash(txn, user_id, pw_hash)
            if logout_devices:
                return store.delete_devices(txn, user_id, None, except_device=keep_device,
                                            stream_pos=pos)
            return []

        if not logout_devices:
            await self.hs.db.run(run, 0)
            return
        with self.hs.stream.get_next() as pos:
            self.hs.auth.invalidate(await self.hs.db.run(run, pos))
        await self.hs.e2e_keys.notify_changed(user_id)

    async def deactivate(self, user_id: str) -> None:
        """Leave every room (and reject invites), then lock the account for good."""
        rooms = await self.hs.db.run(
            event_store.get_rooms_for_user, user_id, ("join", "invite", "knock")
        )
        for room_id in rooms:
            try:
                await self.hs.events.send(room_id, user_id, "m.room.member",
                                          {"membership": "leave"}, user_id)
            except Exception:  # noqa: BLE001 - one room refusing must not stop the others
                logger.warning("deactivation of %s: could not leave %s", user_id, room_id,
                               exc_info=True)

        def run(txn: Txn, pos: int) -> list[str]:
            store.set_deactivated(txn, user_id)
            return store.delete_devices(txn, user_id, None, stream_pos=pos)

        with self.hs.stream.get_next() as pos:
            self.hs.auth.invalidate(await self.hs.db.run(run, pos))
        await self.hs.e2e_keys.notify_changed(user_id)
        await self.hs.room_keys.delete_all(user_id)

    # --- devices ----------------------------------------------------------------------
    async def list_devices(self, user_id: str) -> list[dict[str, Any]]:
        return [_clean(d) for d in await self.hs.db.run(store.list_devices, user_id)]

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any]:
        device = await self.hs.db.run(store.get_device, user_id, device_id)
        if device is None:
            raise not_found("Unknown device")
        return _clean(device)

    async def rename_device(self, user_id: str, device_id: str, name: str | None) -> None:
        if not await self.hs.db.run(store.rename_device, user_id, device_id, name):
            raise not_found("Unknown device")

    # --- profiles ---------------------------------------------------------------------
    async def get_profile(self, user_id: str) -> dict[str, str]:
        user = await self.hs.db.run(store.get_user, user_id)
        if user is None or user["deactivated"]:
            raise not_found("Profile not found")
        return {k: user[k] for k in PROFILE_FIELDS if user[k]}

    async def set_profile_field(self, user_id: str, field: str, value: str | None) -> None:
        """Store a profile field and announce it in every room the user has joined."""
        if field not in PROFILE_FIELDS:
            raise not_found("Unknown profile field")
        self.hs.ratelimiter.check("profile", user_id)
        await self.hs.db.run(store.set_profile_field, user_id, field, value or None)
        rooms = await self.hs.db.run(event_store.get_rooms_for_user, user_id)
        for room_id in rooms:
            try:
                state = await self.hs.db.run(
                    event_store.get_current_state, room_id, [("m.room.member", user_id)]
                )
                current = state.get(("m.room.member", user_id))
                content = dict(current["content"]) if current else {}
                if content.get("membership") != "join":
                    continue
                if (content.get(field) or None) == (value or None):
                    continue
                if value:
                    content[field] = value
                else:
                    content.pop(field, None)
                await self.hs.events.send(room_id, user_id, "m.room.member", content, user_id)
            except Exception:  # noqa: BLE001 - one room refusing must not stop the others
                logger.warning("profile update of %s: could not update %s", user_id, room_id,
                               exc_info=True)

    # --- registration tokens ----------------------------------------------------------
    async def create_registration_token(
        self, token: str | None, uses_allowed: int | None, expiry_time: int | None
    ) -> str:
        token = token or secrets.token_urlsafe(12)
        if not REGISTRATION_TOKEN_RE.match(token):
            raise MatrixError(400, "M_INVALID_PARAM",
                              "Tokens are 1-64 characters of A-Z, a-z, 0-9, and ._~-")
        if uses_allowed is not None and uses_allowed < 0:
            raise MatrixError(400, "M_INVALID_PARAM", "uses must not be negative")
        await self.hs.db.run(store.add_registration_token, token, uses_allowed, expiry_time)
        return token

    async def registration_token_valid(self, token: str) -> bool:
        return bool(await self.hs.db.run(store.registration_token_usable, token, now_ms()))

    # --- user-interactive auth ----------------------------------------------------------
    async def user_interactive_auth(
        self, body: dict[str, Any], flows: list[list[str]], uri: str, method: str,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Run the UIA state machine (spec "User-interactive API in the REST API").

        Returns {"completed", "session", "params"} once a flow is complete, else raises the
        401 challenge (with errcode/error when the stage just attempted failed). `params`
        holds what stages recorded, e.g. the registration token to count as used.
        """
        auth = body.get("auth")
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, "M_BAD_JSON", "auth must be an object")
        session_id = auth.get("session") if auth else None
        if session_id is not None and not isinstance(session_id, str):
            raise MatrixError(400, "M_BAD_JSON", "auth.session must be a string")
        completed: list[str] = []
        stage_params: dict[str, Any] = {}
        if session_id is not None:
            session = await self.hs.db.run(store.get_uia_session, session_id)
            if session is None:
                raise MatrixError(400, "M_UNKNOWN", "Unknown UIA session")
            if session["uri"] != uri or session["method"] != method or (
                session["user_id"] != user_id
            ):
                raise forbidden("UIA session was started for another request")
            completed = session["completed"]
            stage_params = await self.hs.db.run(store.get_uia_params, session_id)
        else:
            session_id = secrets.token_urlsafe(24)
            ts = now_ms()

            def start(txn: Txn) -> None:
                store.delete_old_uia_sessions(txn, ts - UIA_SESSION_LIFETIME_MS)
                store.create_uia_session(txn, session_id, uri, method, user_id, ts)

            await self.hs.db.run(start)
        allowed = {stage for flow in flows for stage in flow}
        error: MatrixError | None = None
        stage = auth.get("type") if auth else None
        if stage is not None:
            if not isinstance(stage, str):
                raise MatrixError(400, "M_BAD_JSON", "auth.type must be a string")
            try:
                if stage not in allowed:
                    raise MatrixError(400, "M_UNRECOGNIZED", f"Auth type {stage} not allowed here")
                if stage not in completed:
                    recorded = await self._complete_stage(stage, auth, user_id)
                    completed = [*completed, stage]
                    if recorded is not None:
                        stage_params[stage] = recorded

                    def save(txn: Txn) -> None:
                        store.set_uia_completed(txn, session_id, completed)
                        store.set_uia_params(txn, session_id, stage_params)

                    await self.hs.db.run(save)
            except MatrixError as e:
                if e.errcode in ("M_LIMIT_EXCEEDED", "M_BAD_JSON", "M_MISSING_PARAM"):
                    raise
                error = e
        for flow in flows:
            if all(s in completed for s in flow):
                await self.hs.db.run(store.delete_uia_session, session_id)
                return {"completed": completed, "session": session_id, "params": stage_params}
        extra: dict[str, Any] = {"flows": [{"stages": f} for f in flows], "params": {},
                                 "session": session_id}
        if completed:
            extra["completed"] = completed
        if error is not None:
            raise MatrixError(401, error.errcode, error.error, **extra)
        # The challenge that starts (or continues) a flow carries no errcode.
        raise MatrixError(401, "", "", **extra)

    async def _complete_stage(
        self, stage: str, auth: dict[str, Any], user_id: str | None
    ) -> Any:
        """Check one stage's credentials; returns what to remember about it (or None)."""
        if stage == "m.login.dummy":
            return None
        if stage == "m.login.password":
            identifier = auth.get("identifier")
            who: Any = None
            if isinstance(identifier, dict):
                if identifier.get("type") != "m.id.user":
                    raise MatrixError(400, "M_UNKNOWN", "Only m.id.user identifiers are supported")
                who = identifier.get("user")
            else:
                who = auth.get("user", user_id)
            password = auth.get("password")
            if not isinstance(who, str) or not isinstance(password, str):
                raise MatrixError(400, "M_BAD_JSON",
                                  "m.login.password needs a user identifier and a password")
            uid = self.resolve_user(who)
            if uid is None or (user_id is not None and uid != user_id):
                raise forbidden("Invalid password")
            await self.hs.ratelimiter.acheck("login", uid)
            if not await self.check_password(uid, password):
                raise forbidden("Invalid password")
            return None
        if stage == "m.login.registration_token":
            token = auth.get("token")
            if not isinstance(token, str):
                raise MatrixError(400, "M_BAD_JSON", "auth.token must be a string")
            if not await self.registration_token_valid(token):
                raise MatrixError(401, "M_FORBIDDEN", "Invalid registration token")
            return token
        raise MatrixError(400, "M_UNRECOGNIZED", f"Unknown auth stage {stage}")


def _clean(device: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in device.items() if v is not None}
