"""Matrix filters (client-server API "Filtering"): validation, parsing and matching.

Parse once, match many times::

    f = Filter.from_json(body)                 # validates, raises ValueError
    if f.room.room_allowed(room_id):
        events = [e for e in timeline if f.room.timeline.matches(e, room_id)]
        limit = f.room.timeline.limit_or(10)
    events = [f.apply_event_fields(e) for e in events]

``validate_filter`` returns a normalised copy of the JSON (``null`` members dropped,
integral float limits turned into ints); that is what a server should store and hand
back from ``GET /user/{userId}/filter/{filterId}``.

Beyond the spec's fields, room event filters accept the MSC3440 thread filters
``related_by_rel_types`` / ``related_by_senders`` (also under their unstable names
``io.element.relation_types`` / ``io.element.relation_senders``); they need relation
data the event does not carry, so they are checked by
:meth:`RoomEventFilter.matches_relations`, not by :meth:`RoomEventFilter.matches`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from veche.core.numbers import is_safe_int
from veche.core.push_evaluator import parse_dotted_path

__all__ = [
    "DEFAULT_FILTER",
    "EventFilter",
    "Filter",
    "RoomEventFilter",
    "parse_room_event_filter",
    "RoomFilter",
    "apply_event_fields",
    "validate_filter",
]

EVENT_FORMATS: Final = ("client", "federation")
_UNSTABLE_ALIASES: Final = {
    "io.element.relation_types": "related_by_rel_types",
    "io.element.relation_senders": "related_by_senders",
}

JsonDict = dict[str, Any]


# --------------------------------------------------------------------------- validation


def _fail(path: str, message: str) -> ValueError:
    return ValueError(f"Invalid filter: '{path}' {message}")


def _check_bool(obj: JsonDict, key: str, path: str) -> None:
    if key in obj and not isinstance(obj[key], bool):
        raise _fail(path + key, "must be a boolean")


def _check_limit(obj: JsonDict, path: str) -> None:
    if "limit" not in obj:
        return
    value = obj["limit"]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not is_safe_int(value) or value < 0:
        raise _fail(path + "limit", "must be a non-negative integer within 2**53 - 1")
    obj["limit"] = value


def _check_str_list(obj: JsonDict, key: str, path: str, sigil: str | None = None) -> None:
    if key not in obj:
        return
    value = obj[key]
    if not isinstance(value, list):
        raise _fail(path + key, "must be a list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _fail(f"{path}{key}[{i}]", "must be a string")
        if sigil is not None and not item.startswith(sigil):
            what = "room ID" if sigil == "!" else "user ID"
            raise _fail(f"{path}{key}[{i}]", f"must be a {what} (starting with '{sigil}')")


def _object(parent: JsonDict, key: str, path: str) -> JsonDict | None:
    """Copy of the sub-object ``parent[key]`` (None if absent), dropping null members."""
    if key not in parent:
        return None
    value = parent[key]
    if not isinstance(value, dict):
        raise _fail(path + key, "must be an object")
    out = {k: v for k, v in value.items() if v is not None}
    parent[key] = out
    return out


def _validate_event_filter(obj: JsonDict, path: str) -> None:
    _check_limit(obj, path)
    _check_str_list(obj, "types", path)
    _check_str_list(obj, "not_types", path)
    _check_str_list(obj, "senders", path, "@")
    _check_str_list(obj, "not_senders", path, "@")


def _validate_room_event_filter(obj: JsonDict, path: str) -> None:
    _validate_event_filter(obj, path)
    _check_str_list(obj, "rooms", path, "!")
    _check_str_list(obj, "not_rooms", path, "!")
    for key in ("contains_url", "lazy_load_members", "include_redundant_members",
                "unread_thread_notifications"):
        _check_bool(obj, key, path)
    for key in ("related_by_rel_types", "io.element.relation_types"):
        _check_str_list(obj, key, path)
    for key in ("related_by_senders", "io.element.relation_senders"):
        _check_str_list(obj, key, path, "@")


def parse_room_event_filter(body: Any, path: str = "filter") -> RoomEventFilter:
    """Validate and parse a RoomEventFilter given on its own (the ``filter`` parameter of
    /messages and /context). Raises ValueError naming the offending field."""
    if not isinstance(body, dict):
        raise ValueError(f"Invalid filter: '{path}' must be an object")
    copy = dict(body)
    _validate_room_event_filter(copy, path)
    return RoomEventFilter.from_json(copy)


def validate_filter(body: Any) -> JsonDict:
    """Validate a filter definition; return a normalised copy.

    Raises ValueError whose message names the offending field, e.g.
    ``Invalid filter: 'room.timeline.limit' must be a non-negative integer``.
    Unknown keys are kept (the spec's objects allow additional properties).
    """
    if not isinstance(body, dict):
        raise ValueError("Invalid filter: the filter must be a JSON object")
    out: JsonDict = {k: v for k, v in body.items() if v is not None}
    if "event_fields" in out:
        _check_str_list(out, "event_fields", "")
    if "event_format" in out and out["event_format"] not in EVENT_FORMATS:
        raise _fail("event_format", "must be 'client' or 'federation'")
    for key in ("presence", "account_data"):
        sub = _object(out, key, "")
        if sub is not None:
            _validate_event_filter(sub, key + ".")
    room = _object(out, "room", "")
    if room is not None:
        _check_str_list(room, "rooms", "room.", "!")
        _check_str_list(room, "not_rooms", "room.", "!")
        _check_bool(room, "include_leave", "room.")
        for key in ("timeline", "state", "ephemeral", "account_data"):
            sub = _object(room, key, "room.")
            if sub is not None:
                _validate_room_event_filter(sub, f"room.{key}.")
    return out


# --------------------------------------------------------------------------- matching


class _TypeMatcher:
    """Event type patterns with ``*`` wildcards: exact names in a set, the rest in one regex."""

    __slots__ = ("exact", "regex")

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        wild: list[str] = []
        for p in patterns:
            if "*" in p:
                wild.append(".*".join(re.escape(part) for part in p.split("*")))
            else:
                exact.add(p)
        self.exact: frozenset[str] = frozenset(exact)
        self.regex: re.Pattern[str] | None = (
            re.compile("|".join(f"(?:{w})" for w in wild), re.DOTALL) if wild else None)

    def __call__(self, event_type: str) -> bool:
        if event_type in self.exact:
            return True
        return self.regex is not None and self.regex.fullmatch(event_type) is not None


def _str_tuple(obj: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    return tuple(value)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """``EventFilter`` (used for ``presence`` and top-level ``account_data``)."""

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: frozenset[str] | None = None
    not_senders: frozenset[str] = frozenset()
    _types_match: _TypeMatcher | None = field(default=None, init=False, repr=False,
                                              compare=False)
    _not_types_match: _TypeMatcher | None = field(default=None, init=False, repr=False,
                                                  compare=False)
    _trivial: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_types_match",
                           _TypeMatcher(self.types) if self.types is not None else None)
        object.__setattr__(self, "_not_types_match",
                           _TypeMatcher(self.not_types) if self.not_types else None)
        object.__setattr__(self, "_trivial", self._compute_trivial())

    def _compute_trivial(self) -> bool:
        return (self.types is None and not self.not_types and self.senders is None
                and not self.not_senders)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> EventFilter:
        """Parse an already-validated EventFilter object."""
        if not obj:
            return DEFAULT_EVENT_FILTER
        return cls(**_event_filter_kwargs(obj))

    @property
    def unrestricted(self) -> bool:
        """True when the filter lets every event through (limit aside)."""
        return self._trivial

    def limit_or(self, default: int, maximum: int | None = None) -> int:
        """The filter's limit, or ``default``; capped at ``maximum`` if given."""
        limit = default if self.limit is None else self.limit
        return limit if maximum is None else min(limit, maximum)

    def matches(self, event: Mapping[str, Any]) -> bool:
        if self._trivial:
            return True
        return self._matches_event(event)

    def _matches_event(self, event: Mapping[str, Any]) -> bool:
        event_type = event.get("type")
        if not isinstance(event_type, str):
            event_type = None
        if self._not_types_match is not None and event_type is not None \
                and self._not_types_match(event_type):
            return False
        if self._types_match is not None and (event_type is None
                                              or not self._types_match(event_type)):
            return False
        if self.senders is not None or self.not_senders:
            sender = event.get("sender")
            if sender is None:
                content = event.get("content")
                if isinstance(content, Mapping):
                    sender = content.get("user_id")
            if sender in self.not_senders:
                return False
            if self.senders is not None and sender not in self.senders:
                return False
        return True

    def filter(self, events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The matching events (no limit applied)."""
        if self._trivial:
            return list(events)
        return [e for e in events if self._matches_event(e)]


def _event_filter_kwargs(obj: Mapping[str, Any]) -> dict[str, Any]:
    senders = obj.get("senders")
    return {
        "limit": obj.get("limit"),
        "types": _str_tuple(obj, "types"),
        "not_types": tuple(obj.get("not_types") or ()),
        "senders": frozenset(senders) if senders is not None else None,
        "not_senders": frozenset(obj.get("not_senders") or ()),
    }


DEFAULT_EVENT_FILTER: Final = EventFilter()


@dataclass(frozen=True, slots=True)
class RoomEventFilter(EventFilter):
    """``RoomEventFilter`` (``room.timeline``, ``room.state``, ``room.ephemeral``,
    ``room.account_data``, and the ``filter`` parameter of /messages and /context)."""

    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False
    related_by_rel_types: frozenset[str] | None = None
    related_by_senders: frozenset[str] | None = None

    def _compute_trivial(self) -> bool:
        return (EventFilter._compute_trivial(self) and self.rooms is None
                and not self.not_rooms and self.contains_url is None)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> RoomEventFilter:
        """Parse an already-validated RoomEventFilter object."""
        if not obj:
            return DEFAULT_ROOM_EVENT_FILTER
        rooms = obj.get("rooms")
        contains_url = obj.get("contains_url")
        rel_types = obj.get("related_by_rel_types", obj.get("io.element.relation_types"))
        rel_senders = obj.get("related_by_senders", obj.get("io.element.relation_senders"))
        return cls(
            **_event_filter_kwargs(obj),
            rooms=frozenset(rooms) if rooms is not None else None,
            not_rooms=frozenset(obj.get("not_rooms") or ()),
            contains_url=contains_url if isinstance(contains_url, bool) else None,
            lazy_load_members=obj.get("lazy_load_members") is True,
            include_redundant_members=obj.get("include_redundant_members") is True,
            unread_thread_notifications=obj.get("unread_thread_notifications") is True,
            related_by_rel_types=frozenset(rel_types) if rel_types is not None else None,
            related_by_senders=frozenset(rel_senders) if rel_senders is not None else None,
        )

    def room_allowed(self, room_id: str | None) -> bool:
        if room_id is not None and room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def matches(self, event: Mapping[str, Any], room_id: str | None = None) -> bool:
        """Whether ``event`` passes; ``room_id`` defaults to ``event["room_id"]``
        (sync omits ``room_id`` from events, so pass it explicitly there)."""
        if self._trivial:
            return True
        if self.rooms is not None or self.not_rooms:
            if not self.room_allowed(room_id if room_id is not None else event.get("room_id")):
                return False
        if not self._matches_event(event):
            return False
        if self.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, Mapping) and "url" in content
            if has_url is not self.contains_url:
                return False
        return True

    def filter(self, events: Iterable[Mapping[str, Any]],
               room_id: str | None = None) -> list[Mapping[str, Any]]:
        if self._trivial:
            return list(events)
        return [e for e in events if self.matches(e, room_id)]

    @property
    def has_relation_filter(self) -> bool:
        return self.related_by_rel_types is not None or self.related_by_senders is not None

    def matches_relations(self, relations: Iterable[tuple[str, str]]) -> bool:
        """MSC3440: given the (rel_type, sender) pairs of the events relating to an
        event, whether one relation satisfies both ``related_by_*`` lists."""
        if not self.has_relation_filter:
            return True
        for rel_type, sender in relations:
            if self.related_by_rel_types is not None and rel_type not in self.related_by_rel_types:
                continue
            if self.related_by_senders is not None and sender not in self.related_by_senders:
                continue
            return True
        return False


DEFAULT_ROOM_EVENT_FILTER: Final = RoomEventFilter()


@dataclass(frozen=True, slots=True)
class RoomFilter:
    rooms: frozenset[str] | None = None
    not_rooms: frozenset[str] = frozenset()
    include_leave: bool = False
    timeline: RoomEventFilter = DEFAULT_ROOM_EVENT_FILTER
    state: RoomEventFilter = DEFAULT_ROOM_EVENT_FILTER
    ephemeral: RoomEventFilter = DEFAULT_ROOM_EVENT_FILTER
    account_data: RoomEventFilter = DEFAULT_ROOM_EVENT_FILTER

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> RoomFilter:
        if not obj:
            return DEFAULT_ROOM_FILTER
        rooms = obj.get("rooms")
        return cls(
            rooms=frozenset(rooms) if rooms is not None else None,
            not_rooms=frozenset(obj.get("not_rooms") or ()),
            include_leave=obj.get("include_leave") is True,
            timeline=RoomEventFilter.from_json(obj.get("timeline")),
            state=RoomEventFilter.from_json(obj.get("state")),
            ephemeral=RoomEventFilter.from_json(obj.get("ephemeral")),
            account_data=RoomEventFilter.from_json(obj.get("account_data")),
        )

    def room_allowed(self, room_id: str) -> bool:
        """Applied before the per-section filters: ``not_rooms`` wins over ``rooms``."""
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def filter_rooms(self, room_ids: Iterable[str]) -> list[str]:
        return [r for r in room_ids if self.room_allowed(r)]


DEFAULT_ROOM_FILTER: Final = RoomFilter()


@functools.lru_cache(maxsize=1024)
def _compile_fields(fields: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(parse_dotted_path(f) for f in fields)


def _copy_fields(event: Mapping[str, Any], paths: Sequence[tuple[str, ...]]) -> JsonDict:
    out: JsonDict = {}
    owned: set[int] = {id(out)}  # dicts built here; anything else is shared with ``event``
    for path in paths:
        node: Any = event
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            target = out
            for part in path[:-1]:
                nxt = target.get(part)
                if not isinstance(nxt, dict) or id(nxt) not in owned:
                    nxt = dict(nxt) if isinstance(nxt, Mapping) else {}
                    owned.add(id(nxt))
                    target[part] = nxt
                target = nxt
            target[path[-1]] = node
    return out


def apply_event_fields(event: Mapping[str, Any], fields: Sequence[str] | None) -> JsonDict:
    """Keep only the ``event_fields`` of ``event`` (dot-separated, ``\\.``-escaped paths).

    ``None`` or an empty list keeps everything (returned as a shallow copy). Values
    are shared with ``event``, not copied.
    """
    if not fields:
        return dict(event)
    return _copy_fields(event, _compile_fields(tuple(fields)))


@dataclass(frozen=True, slots=True)
class Filter:
    """A whole filter definition (the body of ``POST /user/{userId}/filter``)."""

    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventFilter = DEFAULT_EVENT_FILTER
    account_data: EventFilter = DEFAULT_EVENT_FILTER
    room: RoomFilter = DEFAULT_ROOM_FILTER
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    _field_paths: tuple[tuple[str, ...], ...] | None = field(default=None, init=False,
                                                              repr=False, compare=False)

    def __post_init__(self) -> None:
        paths = _compile_fields(self.event_fields) if self.event_fields else None
        object.__setattr__(self, "_field_paths", paths)

    @classmethod
    def from_json(cls, body: Any) -> Filter:
        """Validate and parse a filter definition (raises ValueError)."""
        obj = validate_filter(body)
        fields = obj.get("event_fields")
        return cls(
            event_fields=tuple(fields) if fields is not None else None,
            event_format=obj.get("event_format", "client"),
            presence=EventFilter.from_json(obj.get("presence")),
            account_data=EventFilter.from_json(obj.get("account_data")),
            room=RoomFilter.from_json(obj.get("room")),
            raw=obj,
        )

    @classmethod
    def default(cls) -> Filter:
        return DEFAULT_FILTER

    def to_json(self) -> JsonDict:
        """The (normalised) definition this filter was parsed from."""
        return dict(self.raw)

    def apply_event_fields(self, event: Mapping[str, Any]) -> JsonDict:
        """Restrict ``event`` to ``event_fields`` (identity copy when unset)."""
        if self._field_paths is None:
            return dict(event)
        return _copy_fields(event, self._field_paths)

    @property
    def lazy_load_members(self) -> bool:
        """Whether /sync should lazy-load members (the state filter's flag)."""
        return self.room.state.lazy_load_members


DEFAULT_FILTER: Final = Filter()
