"""Synapse's room admin API (/_synapse/admin/v1/rooms, v2 delete): list, details, members,
state, block, and delete (every local member leaves, the room's aliases and directory entry
go; with `purge` its history is no longer served to anyone; with `block` nobody here may join
or be invited again).

Purging redacts every event of the room in place (what was said, named and shared is
gone) and closes it to every API; the rows themselves stay, because its former members'
clients still need their leave events from /sync."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from veche.errors import MatrixError, forbidden, invalid_param, not_found
from veche.services.events import client_event
from veche.services.rooms import check_room_id
from veche.storage import admin as store
from veche.storage import events as ev_store
from veche.storage import rooms as room_store

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

# order_by -> (field of a listed room, largest first by default as Synapse's are)
ROOM_ORDER: dict[str, tuple[str, bool]] = {
    "name": ("name", False), "alphabetical": ("name", False),
    "canonical_alias": ("canonical_alias", False), "joined_members": ("joined_members", True),
    "size": ("joined_members", True), "joined_local_members": ("joined_local_members", True),
    "version": ("version", True), "creator": ("creator", False),
    "encryption": ("encryption", False), "federatable": ("federatable", False),
    "public": ("public", False), "join_rules": ("join_rules", False),
    "guest_access": ("guest_access", False), "history_visibility": ("history_visibility", False),
    "state_events": ("state_events", True),
}


def _sort_key(value: Any) -> tuple[int, Any]:
    # None last, as SQL orders NULLs for Synapse's ascending lists.
    return (1, "") if value is None else (0, value)


class AdminRooms:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._blocks: dict[str, tuple[str, bool, bool]] | None = None
        self._deletions: dict[str, dict[str, Any]] = {}
        self._finished: dict[str, float] = {}  # delete_id -> when its task ended
        self._tasks: set[asyncio.Task[None]] = set()

    # --- blocks, consulted by membership and room endpoints ------------------------------
    async def _load_blocks(self) -> dict[str, tuple[str, bool, bool]]:
        if self._blocks is None:
            self._blocks = await self.hs.db.run(store.room_blocks)
        return self._blocks

    async def check_joinable(self, room_id: str) -> None:
        """403 for joins, knocks and invites to a room a server admin blocked or deleted."""
        entry = (await self._load_blocks()).get(room_id)
        if entry is not None and (entry[1] or entry[2]):
            raise forbidden("This room has been blocked on this server")

    async def check_not_purged(self, room_id: str) -> None:
        entry = (await self._load_blocks()).get(room_id)
        if entry is not None and entry[2]:
            raise forbidden("This room has been deleted on this server")

    async def _set_block(self, room_id: str, admin_id: str, blocked: bool, purged: bool) -> None:
        blocks = await self._load_blocks()
        await self.hs.db.run(store.set_block, room_id, admin_id, blocked, purged)
        if blocked or purged:
            blocks[room_id] = (admin_id, blocked, purged)
        else:
            blocks.pop(room_id, None)

    async def block_status(self, room_id: str) -> dict[str, Any]:
        check_room_id(room_id)
        entry = (await self._load_blocks()).get(room_id)
        if entry is None or not entry[1]:
            return {"block": False}
        return {"block": True, "user_id": entry[0]}

    async def set_blocked(self, admin_id: str, room_id: str, block: bool) -> None:
        check_room_id(room_id)
        entry = (await self._load_blocks()).get(room_id)
        purged = bool(entry and entry[2])
        await self._set_block(room_id, admin_id if block or purged else "", block, purged)

    # --- reading -------------------------------------------------------------------------
    async def _known(self, room_id: str) -> None:
        check_room_id(room_id)
        entry = (await self._load_blocks()).get(room_id)
        if entry is not None and entry[2] or not await self.hs.db.run(
                room_store.room_exists, room_id):
            raise not_found("Room not found")

    async def _rooms(self, room_ids: list[str]) -> list[dict[str, Any]]:
        """The listed form of each known room, read 500 rooms at a time."""
        def load(txn: Any, chunk: list[str]) -> tuple[dict[str, dict[str, Any]], ...]:
            return (room_store.room_summaries(txn, chunk),
                    store.room_facts(txn, chunk, self.hs.server_name),
                    store.state_contents(txn, chunk, _EXTRA_STATE))

        out = []
        for i in range(0, len(room_ids), 500):
            chunk = room_ids[i:i + 500]
            summaries, facts, extra = await self.hs.db.run(load, chunk)
            for room_id in chunk:
                s, f = summaries.get(room_id), facts.get(room_id)
                if s is not None and f is not None:
                    out.append(_listed(room_id, s, f, extra.get(room_id, {})))
        return out

    async def list_rooms(
        self, start: int, limit: int, order_by: str, backwards: bool, search_term: str | None,
        public: bool | None = None, empty: bool | None = None,
    ) -> dict[str, Any]:
        if order_by not in ROOM_ORDER:
            raise invalid_param(f"Unknown order_by {order_by[:40]!r}")
        blocks = await self._load_blocks()
        room_ids = [r for r in await self.hs.db.run(store.all_room_ids)
                    if not (r in blocks and blocks[r][2])]
        rooms = await self._rooms(room_ids)
        if search_term:
            term = search_term.lower()
            rooms = [r for r in rooms if term in (r["name"] or "").lower()
                     or term in (r["canonical_alias"] or "").split(":", 1)[0].lower()
                     or search_term in r["room_id"]]
        if public is not None:
            rooms = [r for r in rooms if r["public"] == public]
        if empty is not None:
            rooms = [r for r in rooms if (r["joined_members"] == 0) == empty]
        field, largest_first = ROOM_ORDER[order_by]
        rooms.sort(key=lambda r: r["room_id"])
        rooms.sort(key=lambda r: _sort_key(r[field]), reverse=largest_first != backwards)
        page = [_public(r) for r in rooms[start:start + limit]]
        out: dict[str, Any] = {"rooms": page, "offset": start, "total_rooms": len(rooms)}
        if start + len(page) < len(rooms):
            out["next_batch"] = start + len(page)
        if start > 0:
            out["prev_batch"] = max(0, start - limit)
        return out

    async def room_details(self, room_id: str) -> dict[str, Any]:
        await self._known(room_id)
        rooms = await self._rooms([room_id])
        if not rooms:
            raise not_found("Room not found")
        room = rooms[0]
        state = await self.hs.db.run(ev_store.get_current_state, room_id,
                                     [("m.room.tombstone", "")])
        replacement = state.get(("m.room.tombstone", ""), {}).get("content", {}).get(
            "replacement_room")
        return {
            **_public(room), "topic": room["_topic"], "avatar": room["_avatar"],
            "joined_local_devices": await self._local_devices(room_id),
            "forgotten": await self.hs.db.run(
                store.local_members_forgotten, room_id, self.hs.server_name),
            "tombstoned": bool(state), "replacement_room":
                replacement if isinstance(replacement, str) else None,
        }

    async def _local_devices(self, room_id: str) -> int:
        from veche.storage import accounts as account_store

        count = 0
        for user, membership in await self.hs.db.run(
                store.local_members, room_id, self.hs.server_name):
            if membership == "join":
                count += len(await self.hs.db.run(account_store.list_devices, user))
        return count

    async def members(self, room_id: str) -> dict[str, Any]:
        await self._known(room_id)
        members = sorted(await self.hs.db.run(ev_store.get_room_members, room_id))
        return {"members": members, "total": len(members)}

    async def state(self, room_id: str, event_type: str | None) -> dict[str, Any]:
        await self._known(room_id)
        state = await self.hs.db.run(ev_store.get_current_state, room_id)
        events = [client_event(ev) for (typ, _), ev in sorted(state.items())
                  if event_type is None or typ == event_type]
        return {"state": events}

    # --- deleting ------------------------------------------------------------------------
    def _options(self, body: dict[str, Any]) -> tuple[bool, bool]:
        if body.get("new_room_user_id") is not None:
            raise invalid_param("new_room_user_id is not supported by this server")
        for key in ("room_name", "message"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise MatrixError(400, "M_BAD_JSON", f"{key} must be a string")
        flags = []
        for key, default in (("block", False), ("purge", True)):
            value = body.get(key, default)
            if not isinstance(value, bool):
                raise MatrixError(400, "M_BAD_JSON", f"{key} must be a boolean")
            flags.append(value)
        force = body.get("force_purge", False)
        if not isinstance(force, bool):
            raise MatrixError(400, "M_BAD_JSON", "force_purge must be a boolean")
        return flags[0], flags[1]

    async def delete_room(self, admin_id: str, room_id: str, body: dict[str, Any]
                          ) -> dict[str, Any]:
        """Synapse's v1 delete: done when it answers."""
        block, purge = self._options(body)
        check_room_id(room_id)
        if not await self.hs.db.run(room_store.room_exists, room_id):
            if not block:
                raise MatrixError(400, "M_UNKNOWN", "Room not found; nothing to delete")
            await self._set_block(room_id, admin_id, True, False)  # a pre-emptive block
            return _shutdown_result([], [], [])
        return await self._shut_down(admin_id, room_id, block, purge)

    async def start_delete(self, admin_id: str, room_id: str, body: dict[str, Any]) -> str:
        """Synapse's v2 delete: runs in the background; the answer is the delete_id."""
        block, purge = self._options(body)
        await self._known(room_id)
        self._forget_old_deletions()
        delete_id = secrets.token_urlsafe(12)
        status: dict[str, Any] = {
            "delete_id": delete_id, "room_id": room_id, "status": "active",
            "shutdown_room": _shutdown_result([], [], []),
        }
        self._deletions[delete_id] = status

        async def run() -> None:
            try:
                status["shutdown_room"] = await self._shut_down(admin_id, room_id, block, purge)
                status["status"] = "complete"
            except Exception as e:  # noqa: BLE001 - the failure is the task's status
                logger.exception("deleting room %s failed", room_id)
                status["status"], status["error"] = "failed", str(e)[:200]
            self._finished[delete_id] = time.monotonic()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delete_id

    def _forget_old_deletions(self) -> None:
        """Statuses are kept for a day after the task ends, as Synapse keeps them."""
        cutoff = time.monotonic() - 86_400
        for delete_id in [d for d, ts in self._finished.items() if ts < cutoff]:
            del self._finished[delete_id], self._deletions[delete_id]

    def delete_status(self, delete_id: str) -> dict[str, Any]:
        status = self._deletions.get(delete_id)
        if status is None:
            raise not_found("delete id not found")
        return dict(status)

    def delete_statuses(self, room_id: str) -> dict[str, Any]:
        check_room_id(room_id)
        results = [dict(s) for s in self._deletions.values() if s["room_id"] == room_id]
        if not results:
            raise not_found("No delete task for this room")
        return {"results": results}

    async def _shut_down(self, admin_id: str, room_id: str, block: bool, purge: bool
                         ) -> dict[str, Any]:
        if block:
            # First, so nobody slips back in while members are being removed.
            await self._set_block(room_id, admin_id, True, False)
        kicked, failed = [], []
        for user, _ in await self.hs.db.run(store.local_members, room_id, self.hs.server_name):
            try:
                await self.hs.events.send(room_id, user, "m.room.member",
                                          {"membership": "leave"}, user)
                kicked.append(user)
            except Exception:  # noqa: BLE001 - one member refusing must not stop the others
                logger.warning("room deletion: could not remove %s from %s", user, room_id,
                               exc_info=True)
                failed.append(user)
        aliases = await self.hs.db.run(store.remove_room_listing, room_id)
        if purge:
            await self._set_block(room_id, admin_id, block, True)
            await self._erase_content(room_id)
        return _shutdown_result(kicked, failed, aliases)

    async def _erase_content(self, room_id: str) -> None:
        """Redact every event of the room in place: what was said, named and shared is gone
        from the database; the skeleton (membership, auth) that sync and the DAG need stays."""
        import orjson

        from veche.core.redaction import redact_event

        rv = await self.hs.events.room_version(room_id)
        after = 0
        while True:
            rows = await self.hs.db.run(store.unredacted_events, room_id, after, 500)
            if not rows:
                return
            pruned = []
            for stream, js in rows:
                event = orjson.loads(js)
                erased = redact_event(event, rv)
                erased["event_id"] = event["event_id"]
                erased["unsigned"] = {}
                pruned.append((stream, orjson.dumps(erased).decode()))
            await self.hs.db.run(store.erase_events, room_id, pruned, "purged")
            after = rows[-1][0]


_EXTRA_STATE = ("m.room.history_visibility", "m.room.create", "m.room.guest_access")


def _listed(room_id: str, s: dict[str, Any], f: dict[str, Any],
            extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A room as the list shows it (keys starting with _ are for the details only)."""
    hv = extra.get("m.room.history_visibility", {}).get("history_visibility")
    guests = extra.get("m.room.guest_access", {}).get("guest_access")
    return {
        "room_id": room_id, "name": s.get("name"), "canonical_alias": s.get("canonical_alias"),
        "joined_members": s["num_joined_members"],
        "joined_local_members": f["joined_local_members"],
        "version": s["room_version"], "creator": f["creator"],
        "encryption": s.get("encryption"),
        "federatable": extra.get("m.room.create", {}).get("m.federate", True) is not False,
        "public": f["public"], "join_rules": s["join_rule"],
        "guest_access": guests if isinstance(guests, str) else None,
        "history_visibility": hv if isinstance(hv, str) else "shared",
        "state_events": f["state_events"], "room_type": s.get("room_type"),
        "_topic": s.get("topic"), "_avatar": s.get("avatar_url"),
    }


def _shutdown_result(kicked: list[str], failed: list[str], aliases: list[str]) -> dict[str, Any]:
    return {"kicked_users": kicked, "failed_to_kick_users": failed, "local_aliases": aliases,
            "new_room_id": None}


def _public(room: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in room.items() if not k.startswith("_")}
