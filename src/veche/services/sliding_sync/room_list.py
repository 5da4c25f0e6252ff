"""The user's rooms as the lists see them: which rooms, in what order, with the facts the
filters test (DM, encrypted, room type, parent spaces).

Rooms are those joined, invited to, knocked on, banned from or left by someone else's hand
(a kick); a room the user left themselves only when that happened after the connection's
last position, so the client learns of it (as Synapse does). A joined room is placed by its
latest event of any type; another by the user's membership event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from veche.core.sliding_sync import RoomFacts
from veche.services.stripped_state import stripped_state
from veche.storage import events as event_store
from veche.storage import sliding_sync as store
from veche.storage import sync as sync_store
from veche.storage.database import Txn


@dataclass
class Membership:
    membership: str
    pos: int
    event_id: str
    stripped: list[dict[str, Any]] | None = None  # invite or knock: the room as shown


@dataclass
class UserRooms:
    facts: dict[str, RoomFacts] = field(default_factory=dict)
    memberships: dict[str, Membership] = field(default_factory=dict)

    @property
    def joined(self) -> list[str]:
        return [r for r, m in self.memberships.items() if m.membership == "join"]


def _direct_rooms(txn: Txn, user_id: str) -> set[str]:
    content = sync_store.get_account_data(txn, user_id, "", "m.direct") or {}
    out: set[str] = set()
    for rooms in content.values():
        if isinstance(rooms, list):
            out.update(r for r in rooms if isinstance(r, str))
    return out


def user_rooms_txn(txn: Txn, user_id: str, upto: int, since: int | None,
                   spaces: set[str]) -> UserRooms:
    """`spaces`: the spaces the lists filter on (their children are read)."""
    rows = sync_store.membership_rows(txn, user_id)
    leave_ids = [e for _, m, _, e in rows if m == "leave"]
    leaves = event_store.get_events(txn, leave_ids) if leave_ids else {}
    out = UserRooms()
    for room_id, membership, pos, event_id in rows:
        if membership == "leave":
            ev = leaves.get(event_id) or {}
            by_self = ev.get("sender") == user_id
            if by_self and (since is None or pos <= since):
                continue
        out.memberships[room_id] = Membership(membership, pos, event_id)
    joined = out.joined
    stamps = store.latest_positions(txn, joined, upto)
    known = [r for r, m in out.memberships.items() if m.membership not in ("invite", "knock")]
    state = store.current_state_events(txn, known, ["m.room.create", "m.room.encryption"])
    direct = _direct_rooms(txn, user_id)
    children: dict[str, set[str]] = {}
    if spaces:
        for space_id, entries in store.current_state_events(
                txn, sorted(spaces), ["m.space.child"], None).items():
            for (_, child), ev in entries.items():
                via = (ev.get("content") or {}).get("via")
                if isinstance(via, list) and via:
                    children.setdefault(child, set()).add(space_id)
    for room_id, m in out.memberships.items():
        is_dm = room_id in direct
        if m.membership in ("invite", "knock"):
            m.stripped = stripped_state(txn, room_id, user_id, m.event_id)
            by_key = {(e.get("type"), e.get("state_key")): e for e in m.stripped}
            own = by_key.get(("m.room.member", user_id)) or {}
            is_dm = is_dm or bool((own.get("content") or {}).get("is_direct"))
        else:
            by_key = state.get(room_id, {})  # type: ignore[assignment]
        create = (by_key.get(("m.room.create", "")) or {}).get("content") or {}
        encrypted = ("m.room.encryption", "") in by_key
        stamp = stamps.get(room_id, m.pos) if m.membership == "join" else m.pos
        room_type = create.get("type")
        out.facts[room_id] = RoomFacts(
            room_id, m.membership, stamp, is_dm=is_dm, is_encrypted=encrypted,
            room_type=room_type if isinstance(room_type, str) else None,
            in_spaces=frozenset(children.get(room_id, ())),
        )
    return out
