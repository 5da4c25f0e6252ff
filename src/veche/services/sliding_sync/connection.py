"""A sliding sync connection's state behind one `pos`: what it sent of each room and list.

A room entry says up to which stream position the client has the room (`since`), with
which `required_state` and `timeline_limit`, and which members `$LAZY` already sent. A
room that leaves the lists' ranges keeps its entry, so when it comes back only what
happened since is sent (Synapse's "previously sent"). A list entry is its count and the
rooms of its ranges in order, to tell whether the list changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from veche.core.sliding_sync import RequiredState


@dataclass
class RoomSent:
    since: int
    required_state: RequiredState
    timeline_limit: int
    lazy_sent: set[str] = field(default_factory=set)
    membership: str = "join"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"s": self.since, "rs": self.required_state.to_json(),
                               "tl": self.timeline_limit, "m": self.membership}
        if self.lazy_sent:
            out["lm"] = sorted(self.lazy_sent)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RoomSent:
        return cls(int(raw["s"]), RequiredState.from_json(raw.get("rs", [])), int(raw.get("tl", 0)),
                   set(raw.get("lm", [])), str(raw.get("m", "join")))


@dataclass
class ConnectionState:
    rooms: dict[str, RoomSent] = field(default_factory=dict)
    lists: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    # extension -> room -> the position up to which its data of the room was sent (the
    # account_data and receipts extensions, whose rooms need not be the lists' own).
    extensions: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"rooms": {r: s.to_json() for r, s in self.rooms.items()},
                "lists": {n: {"count": c, "ids": ids} for n, (c, ids) in self.lists.items()},
                "ext": self.extensions}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ConnectionState:
        return cls({r: RoomSent.from_json(s) for r, s in raw.get("rooms", {}).items()},
                   {n: (int(v["count"]), list(v["ids"])) for n, v in raw.get("lists", {}).items()},
                   {e: {r: int(p) for r, p in rooms.items()}
                    for e, rooms in raw.get("ext", {}).items()})


@dataclass
class Position:
    """Where a request continues from: none (a new connection) or a stored position."""

    pos: str | None
    stream: int
    typing: int
    state: ConnectionState

    @property
    def since(self) -> int | None:
        return self.stream if self.pos is not None else None
