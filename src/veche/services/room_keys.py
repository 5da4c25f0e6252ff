"""Server-side key backups: versions (algorithm + auth_data) and encrypted session keys.

The server never sees a key in the clear: `session_data` is opaque. It only decides, per
session, whether an upload replaces what it holds (spec: "Server-side key backups").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.errors import MatrixError, invalid_param, not_found
from veche.storage import room_keys as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

KeyData = store.KeyData
# room ID -> session ID -> key data
Keys = dict[str, dict[str, KeyData]]


def _parse_version(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 18 else None


def _better(new: KeyData, old: KeyData) -> bool:
    """Whether an uploaded key replaces the stored one (spec order: verified, index, forwards)."""
    if new["is_verified"] != old["is_verified"]:
        return bool(new["is_verified"])
    if new["first_message_index"] != old["first_message_index"]:
        return bool(new["first_message_index"] < old["first_message_index"])
    return bool(new["forwarded_count"] < old["forwarded_count"])


def _live(txn: Txn, user_id: str, raw: str) -> int:
    """A version that exists (for reads and deletes): M_NOT_FOUND otherwise."""
    version = _parse_version(raw)
    if version is None or store.get_version(txn, user_id, version) is None:
        raise not_found("Unknown backup version")
    return version


def _writable(txn: Txn, user_id: str, raw: str) -> int:
    """Keys may only be uploaded to the current version; a client on an old one is told which."""
    current = store.current_version(txn, user_id)
    if current is None:
        raise not_found("Unknown backup version")
    if _parse_version(raw) != current:
        raise MatrixError(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.",
                          current_version=str(current))
    return current


def _summary(txn: Txn, user_id: str, version: int) -> dict[str, Any]:
    info = store.get_version(txn, user_id, version)
    assert info is not None
    return {"etag": info["etag"], "count": info["count"]}


class RoomKeysService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    # --- versions -------------------------------------------------------------------
    async def create_version(self, user_id: str, algorithm: str, auth_data: dict[str, Any]) -> str:
        return str(await self.hs.db.run(store.create_version, user_id, algorithm, auth_data))

    async def get_version(self, user_id: str, raw: str | None) -> dict[str, Any]:
        """The given version, or the current one when `raw` is None."""

        def run(txn: Txn) -> dict[str, Any] | None:
            version = store.current_version(txn, user_id) if raw is None else _parse_version(raw)
            return None if version is None else store.get_version(txn, user_id, version)

        info = await self.hs.db.run(run)
        if info is None:
            raise not_found("No current backup version" if raw is None else "Unknown backup version")
        return info

    async def update_version(self, user_id: str, raw: str, algorithm: str,
                             auth_data: dict[str, Any]) -> None:
        def run(txn: Txn) -> None:
            version = _live(txn, user_id, raw)
            info = store.get_version(txn, user_id, version)
            assert info is not None
            if info["algorithm"] != algorithm:
                raise invalid_param("Algorithm does not match")
            store.update_auth_data(txn, user_id, version, auth_data)

        await self.hs.db.run(run)

    async def delete_version(self, user_id: str, raw: str) -> None:
        def run(txn: Txn) -> None:
            version = _parse_version(raw)
            if version is None or not store.delete_version(txn, user_id, version):
                raise not_found("Unknown backup version")

        await self.hs.db.run(run)

    async def delete_all(self, user_id: str) -> None:
        """Every backup of a user (account deactivation)."""
        await self.hs.db.run(store.delete_all_for_user, user_id)

    # --- keys ---------------------------------------------------------------------------
    async def upload(self, user_id: str, raw: str, keys: Keys) -> dict[str, Any]:
        """Store what is better than what is held, in one transaction; {etag, count}."""

        def run(txn: Txn) -> dict[str, Any]:
            version = _writable(txn, user_id, raw)
            changed = False
            for room_id, sessions in keys.items():
                held = store.get_keys(txn, user_id, version, room_id).get(room_id, {})
                for session_id, key in sessions.items():
                    old = held.get(session_id)
                    if old is None or _better(key, old):
                        store.put_key(txn, user_id, version, room_id, session_id, key)
                        changed = True
            if changed:
                store.bump_etag(txn, user_id, version)
            return _summary(txn, user_id, version)

        return await self.hs.db.run(run)

    async def get(self, user_id: str, raw: str, room_id: str | None = None,
                  session_id: str | None = None) -> Keys:
        def run(txn: Txn) -> Keys:
            return store.get_keys(txn, user_id, _live(txn, user_id, raw), room_id, session_id)

        return await self.hs.db.run(run)

    async def delete(self, user_id: str, raw: str, room_id: str | None = None,
                     session_id: str | None = None) -> dict[str, Any]:
        def run(txn: Txn) -> dict[str, Any]:
            version = _live(txn, user_id, raw)
            if store.delete_keys(txn, user_id, version, room_id, session_id):
                store.bump_etag(txn, user_id, version)
            return _summary(txn, user_id, version)

        return await self.hs.db.run(run)
