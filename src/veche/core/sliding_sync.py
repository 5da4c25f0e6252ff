"""Simplified Sliding Sync (MSC4186, `org.matrix.simplified_msc3575`): the request, checked
and parsed, and the pure rules behind a response (list windows, `required_state` matching).

The request shape is the one Synapse 1.163 and Element X speak: a list has `ranges` (pairs,
both ends inclusive), `required_state` is `[type, state_key]` pairs with the `*`, `$LAZY`
and `$ME` placeholders, and list responses carry `SYNC` ops. The newest MSC text (`range`,
include/exclude lists, `timeline_events`) is not what the apps send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WILDCARD = "*"
LAZY = "$LAZY"
ME = "$ME"
MEMBER = "m.room.member"

MAX_TIMELINE_LIMIT = 1000
MAX_LISTS = 100
MAX_RANGES = 100
MAX_REQUIRED_STATE = 1000
MAX_SUBSCRIPTIONS = 1000
MAX_TO_DEVICE_LIMIT = 1000
DEFAULT_TO_DEVICE_LIMIT = 100
MAX_CONN_ID = 100

# Events that move a room's bump_stamp (Synapse's DEFAULT_BUMP_EVENT_TYPES).
BUMP_EVENT_TYPES = (
    "m.room.create", "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite",
    "m.poll.start", "m.beacon_info",
)

StateKey = tuple[str, str]


@dataclass(frozen=True)
class RequiredState:
    """The state a client asks for, as `[type, state_key]` pairs."""

    pairs: frozenset[StateKey] = frozenset()

    @classmethod
    def from_json(cls, raw: Any) -> RequiredState:
        if not isinstance(raw, list) or len(raw) > MAX_REQUIRED_STATE:
            raise ValueError(f"required_state must be a list of at most {MAX_REQUIRED_STATE} pairs")
        pairs = set()
        for item in raw:
            if (not isinstance(item, list) or len(item) != 2
                    or not all(isinstance(p, str) for p in item)):
                raise ValueError("required_state entries must be [type, state_key] strings")
            pairs.add((item[0], item[1]))
        return cls(frozenset(pairs))

    def to_json(self) -> list[list[str]]:
        return [list(p) for p in sorted(self.pairs)]

    def union(self, other: RequiredState) -> RequiredState:
        return RequiredState(self.pairs | other.pairs)

    @property
    def lazy_members(self) -> bool:
        return (MEMBER, LAZY) in self.pairs

    def matches(self, event_type: str, state_key: str, me: str, lazy: frozenset[str] | set[str]
                = frozenset()) -> bool:
        """Whether the state entry (type, state_key) is asked for; `lazy`: the members that
        `$LAZY` stands for here (the timeline's senders)."""
        for typ, key in self.pairs:
            if typ != WILDCARD and typ != event_type:
                continue
            if key == WILDCARD or key == state_key:
                return True
            if key == ME and state_key == me:
                return True
            if key == LAZY and event_type == MEMBER and state_key in lazy:
                return True
        return False

    def added_since(self, before: RequiredState) -> RequiredState:
        """The pairs asked for now that were not before (their state must be sent, as the
        client has not had it). After `*, *` the client has had everything."""
        if (WILDCARD, WILDCARD) in before.pairs:
            return RequiredState()
        return RequiredState(self.pairs - before.pairs)

    def remembered_after(self, request: RequiredState, changed: set[StateKey] | frozenset[StateKey],
                         me: str) -> RequiredState:
        """What a connection that sent `self` remembers sending once `request` is answered,
        as Synapse does: a pair the client stopped asking for is still the client's until
        its state changes (so asking for it again sends nothing new); wildcards and `$LAZY`
        are not kept."""
        if (WILDCARD, WILDCARD) in self.pairs:
            return request
        kept = set()
        for typ, key in self.pairs - request.pairs:
            if WILDCARD in (typ, key) or key == LAZY:
                continue
            if (typ, me if key == ME else key) in changed:
                continue
            kept.add((typ, key))
        return RequiredState(request.pairs | kept)


@dataclass(frozen=True)
class RoomConfig:
    timeline_limit: int
    required_state: RequiredState

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str) -> RoomConfig:
        limit = raw.get("timeline_limit", 0)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"{where}.timeline_limit must be a non-negative integer")
        return cls(min(limit, MAX_TIMELINE_LIMIT),
                   RequiredState.from_json(raw.get("required_state", [])))

    def combine(self, other: RoomConfig) -> RoomConfig:
        """A room in several lists (or lists and a subscription): the widest of each."""
        return RoomConfig(max(self.timeline_limit, other.timeline_limit),
                          self.required_state.union(other.required_state))


@dataclass(frozen=True)
class ListFilters:
    is_dm: bool | None = None
    is_encrypted: bool | None = None
    is_invite: bool | None = None
    room_types: tuple[str | None, ...] | None = None
    not_room_types: tuple[str | None, ...] | None = None
    spaces: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, raw: Any, where: str) -> ListFilters:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError(f"{where}.filters must be an object")
        out: dict[str, Any] = {}
        for name in ("is_dm", "is_encrypted", "is_invite"):
            value = raw.get(name)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"{where}.filters.{name} must be a boolean")
            out[name] = value
        for name in ("room_types", "not_room_types"):
            value = raw.get(name)
            if value is None:
                continue
            if not isinstance(value, list) or not all(v is None or isinstance(v, str) for v in value):
                raise ValueError(f"{where}.filters.{name} must be a list of strings or nulls")
            out[name] = tuple(value)
        spaces = raw.get("spaces")
        if spaces is not None:
            if not isinstance(spaces, list) or not all(isinstance(v, str) for v in spaces):
                raise ValueError(f"{where}.filters.spaces must be a list of room IDs")
            out["spaces"] = tuple(spaces)
        return cls(**out)

    def accepts(self, room: RoomFacts) -> bool:
        if self.is_dm is not None and room.is_dm != self.is_dm:
            return False
        if self.is_encrypted is not None and room.is_encrypted != self.is_encrypted:
            return False
        if self.is_invite is not None and (room.membership == "invite") != self.is_invite:
            return False
        if self.room_types is not None and room.room_type not in self.room_types:
            return False
        if self.not_room_types is not None and room.room_type in self.not_room_types:
            return False
        return self.spaces is None or bool(room.in_spaces & set(self.spaces))


@dataclass(frozen=True)
class RoomFacts:
    """What the list filters and the order look at, of one room of the user."""

    room_id: str
    membership: str
    stamp: int  # the stream position of its latest event (the membership's, if not joined)
    is_dm: bool = False
    is_encrypted: bool = False
    room_type: str | None = None
    in_spaces: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ListConfig:
    ranges: tuple[tuple[int, int], ...]
    room: RoomConfig
    filters: ListFilters

    @classmethod
    def from_json(cls, raw: Any, where: str) -> ListConfig:
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be an object")
        ranges_raw = raw.get("ranges", [])
        if not isinstance(ranges_raw, list) or len(ranges_raw) > MAX_RANGES:
            raise ValueError(f"{where}.ranges must be a list of at most {MAX_RANGES} pairs")
        ranges = []
        for r in ranges_raw:
            if (not isinstance(r, list) or len(r) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in r)
                    or r[0] > r[1]):
                raise ValueError(f"{where}.ranges entries must be [start, end], 0 <= start <= end")
            ranges.append((r[0], r[1]))
        return cls(tuple(ranges), RoomConfig.from_json(raw, where),
                   ListFilters.from_json(raw.get("filters"), where))


@dataclass(frozen=True)
class RoomScope:
    """Which rooms an extension covers: those of the named lists and subscriptions (`*`: all)."""

    lists: tuple[str, ...] | None = None
    rooms: tuple[str, ...] | None = None

    def covers(self, room_id: str, lists_of_room: set[str], subscribed: bool) -> bool:
        """`lists_of_room`: the lists whose ranges hold the room. Both default to `*`, as
        in Synapse; a room is covered through a list or through its subscription."""
        lists = self.lists if self.lists is not None else (WILDCARD,)
        rooms = self.rooms if self.rooms is not None else (WILDCARD,)
        by_list = bool(lists_of_room) and (WILDCARD in lists or bool(lists_of_room & set(lists)))
        by_sub = subscribed and (WILDCARD in rooms or room_id in rooms)
        return by_list or by_sub


@dataclass(frozen=True)
class Extensions:
    to_device: bool = False
    to_device_since: str | None = None
    to_device_limit: int = DEFAULT_TO_DEVICE_LIMIT
    e2ee: bool = False
    account_data: RoomScope | None = None
    receipts: RoomScope | None = None
    typing: RoomScope | None = None

    @classmethod
    def from_json(cls, raw: Any) -> Extensions:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError("extensions must be an object")
        out: dict[str, Any] = {}
        for name, ext in raw.items():
            if ext is None:
                continue
            if not isinstance(ext, dict):
                raise ValueError(f"extensions.{name} must be an object")
            enabled = ext.get("enabled", False)
            if not isinstance(enabled, bool):
                raise ValueError(f"extensions.{name}.enabled must be a boolean")
            if not enabled:
                continue
            if name == "to_device":
                since = ext.get("since")
                if since is not None and not isinstance(since, str):
                    raise ValueError("extensions.to_device.since must be a string")
                limit = ext.get("limit", DEFAULT_TO_DEVICE_LIMIT)
                if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                    raise ValueError("extensions.to_device.limit must be a positive integer")
                out.update(to_device=True, to_device_since=since,
                           to_device_limit=min(limit, MAX_TO_DEVICE_LIMIT))
            elif name == "e2ee":
                out["e2ee"] = True
            elif name in ("account_data", "receipts", "typing"):
                out[name] = RoomScope(_names(ext.get("lists"), f"extensions.{name}.lists"),
                                      _names(ext.get("rooms"), f"extensions.{name}.rooms"))
            # Other extensions (threads, thread subscriptions...) are not offered: ignored,
            # as Synapse ignores those it does not know.
        return cls(**out)


def _names(raw: Any, where: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ValueError(f"{where} must be a list of strings")
    return tuple(raw)


@dataclass(frozen=True)
class SlidingSyncRequest:
    conn_id: str | None
    lists: dict[str, ListConfig] = field(default_factory=dict)
    room_subscriptions: dict[str, RoomConfig] = field(default_factory=dict)
    extensions: Extensions = field(default_factory=Extensions)

    @classmethod
    def from_json(cls, body: Any) -> SlidingSyncRequest:
        """Raises ValueError (answered M_BAD_JSON) on a malformed request."""
        if not isinstance(body, dict):
            raise ValueError("The body must be a JSON object")
        conn_id = body.get("conn_id")
        if conn_id is not None and (not isinstance(conn_id, str) or len(conn_id) > MAX_CONN_ID
                                    or "\x00" in conn_id):
            raise ValueError(f"conn_id must be a string of at most {MAX_CONN_ID} characters")
        lists_raw = body.get("lists")
        lists_raw = {} if lists_raw is None else lists_raw
        if not isinstance(lists_raw, dict) or len(lists_raw) > MAX_LISTS:
            raise ValueError(f"lists must be an object of at most {MAX_LISTS} lists")
        lists = {}
        for name, raw in lists_raw.items():
            if len(name) > 64:
                raise ValueError("list names are at most 64 characters")
            lists[name] = ListConfig.from_json(raw, f"lists.{name}")
        subs_raw = body.get("room_subscriptions")
        subs_raw = {} if subs_raw is None else subs_raw
        if not isinstance(subs_raw, dict) or len(subs_raw) > MAX_SUBSCRIPTIONS:
            raise ValueError(f"room_subscriptions must be an object of at most {MAX_SUBSCRIPTIONS}")
        subs = {}
        for room_id, raw in subs_raw.items():
            if not isinstance(raw, dict):
                raise ValueError(f"room_subscriptions.{room_id} must be an object")
            subs[room_id] = RoomConfig.from_json(raw, f"room_subscriptions.{room_id}")
        return cls(conn_id, lists, subs, Extensions.from_json(body.get("extensions")))


def sort_rooms(rooms: list[RoomFacts]) -> list[RoomFacts]:
    """Newest first, by the position of each room's latest event of any type (as Synapse
    orders them: a topic change moves a room up). Synapse leaves a list that its ranges
    cover whole unsorted; here it is always sorted, so the order never depends on the range."""
    return sorted(rooms, key=lambda r: (-r.stamp, r.room_id))


def list_ops(room_ids: list[str], ranges: tuple[tuple[int, int], ...]) -> list[dict[str, Any]]:
    """One SYNC op per range, with the rooms it covers (the range as asked, like Synapse)."""
    return [{"op": "SYNC", "range": [start, end], "room_ids": room_ids[start : end + 1]}
            for start, end in ranges if start < len(room_ids)]


def in_ranges(room_ids: list[str], ranges: tuple[tuple[int, int], ...]) -> list[str]:
    seen: dict[str, None] = {}
    for start, end in ranges:
        for room_id in room_ids[start : end + 1]:
            seen[room_id] = None
    return list(seen)
