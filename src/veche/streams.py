"""Stream positions and sync tokens.

Everything /sync reports (room events, account data, receipts, to-device messages, device
list changes, presence) takes its position from one server-wide stream. A sync token is
`s<stream>_<typing>`: the stream position plus the in-memory typing serial.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from veche.core.numbers import parse_count
from veche.errors import MatrixError

# How far ahead of the positions in use the durable reservation runs.
RESERVE_AHEAD = 10_000


class StreamIdGenerator:
    """Hands out positions; `current` only advances past positions whose writes committed.

    A reader that reads up to `current` can never miss a row that commits later with a
    lower position (concurrent PostgreSQL transactions may commit out of order).

    Not every position ends up in a row (a send that fails, a presence update that changes
    nothing), yet `current` passes it and sync tokens carry it. So that a restart never hands
    out a position a client already holds, `current` also stays within a reservation that
    is durably stored (`extend` is called to store a new one ahead of time; `reserved`
    reports it stored), and after a restart positions start above it.
    """

    def __init__(
        self, last: int, reserved: int | None = None,
        extend: Callable[[int], None] | None = None,
    ) -> None:
        self._last = last
        self._current = last
        self._unfinished: set[int] = set()
        self._lock = threading.Lock()
        self._reserved = reserved if reserved is not None else 2**62
        self._extend = extend
        self._extending = False
        self._listeners: list[Callable[[int], None]] = []
        # The highest position handed out for more than a room timeline (see
        # `timeline_only_after`); positions from before the start count as such.
        self._last_other = last

    def on_advance(self, listener: Callable[[int], None]) -> None:
        """Call `listener(current)` whenever `current` moves forward."""
        self._listeners.append(listener)

    @contextlib.contextmanager
    def get_next(self, *, timeline: bool = False) -> Iterator[int]:
        """A position for one write. `timeline`: it is an event that, unless `not_timeline`
        is said of it before it finishes, adds to its room's timeline and nothing more."""
        target = None
        with self._lock:
            self._last += 1
            pos = self._last
            if not timeline:
                self._last_other = pos
            self._unfinished.add(pos)
            if (self._extend is not None and not self._extending
                    and pos > self._reserved - RESERVE_AHEAD // 2):
                self._extending = True
                target = max(self._reserved, pos) + RESERVE_AHEAD
        if target is not None:
            self._extend(target)  # type: ignore[misc]
        try:
            yield pos
        finally:
            with self._lock:
                self._unfinished.discard(pos)
                moved = self._advance()
            if moved:
                self._advanced()

    def not_timeline(self, pos: int) -> None:
        """The write at `pos`, taken with `timeline=True`, moved more (current state)."""
        with self._lock:
            self._last_other = max(self._last_other, pos)

    def timeline_only_after(self, pos: int) -> bool:
        """Whether every position past `pos` handed out in this process went to events that
        moved nothing but their room's timeline: no state, membership, receipt, account
        data, presence or device list row has a position past it. /sync then skips reading
        those. (A CLI command run against a live server takes positions this process never
        hears of: its writes were never sure to reach a /sync.)"""
        return pos >= self._last_other

    def _advance(self) -> bool:
        before = self._current
        done = (min(self._unfinished) - 1) if self._unfinished else self._last
        self._current = min(done, self._reserved)
        return self._current != before

    def _advanced(self) -> None:
        for listener in self._listeners:
            listener(self._current)

    def reserved(self, upto: int | None) -> bool:
        """The reservation up to `upto` is stored (None: storing it failed, try again later).
        True if `current` moved, so waiting readers should look again."""
        with self._lock:
            self._extending = False
            if upto is None:
                return False
            self._reserved = max(self._reserved, upto)
            moved = self._advance()
        if moved:
            self._advanced()
        return moved

    @property
    def current(self) -> int:
        return self._current

    @property
    def last(self) -> int:
        """The highest position handed out (finished or not)."""
        return self._last


@dataclass(frozen=True, slots=True)
class StreamToken:
    stream: int
    typing: int = 0

    def __str__(self) -> str:
        return f"s{self.stream}_{self.typing}"

    @classmethod
    def parse(cls, token: str) -> StreamToken:
        parts = token[1:].split("_") if token.startswith("s") else []
        stream = parse_count(parts[0]) if parts else None
        typing = parse_count(parts[1]) if len(parts) > 1 else 0
        if stream is None or typing is None or len(parts) > 2:
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid token: {token[:64]!r}")
        return cls(stream, typing)


@dataclass(frozen=True, slots=True)
class RoomToken:
    """A point in one room's timeline, between two events: those at or before it are "before"
    it. /messages, /context, /relations and /threads hand out `t<depth>-<stream>`, a
    topological point: the room's events in (depth, stream_ordering) order, so an event
    stored late but placed early in the graph (backfill) pages where the graph puts it.

    A /sync token (`s<stream>_<typing>`, its prev_batch) has no depth: as a bound it compares
    stream orderings only, as Synapse does with a stream token. Pagination from it goes on
    with the topological tokens of the events it reaches.
    """

    stream: int
    depth: int | None = None

    def __str__(self) -> str:
        if self.depth is None:
            return str(StreamToken(self.stream))
        return f"t{self.depth}-{self.stream}"

    @classmethod
    def parse(cls, token: str) -> RoomToken:
        if not token.startswith("t"):
            return cls(StreamToken.parse(token).stream)
        # Backfilled events have negative stream orderings (before anything /sync has
        # served): `t5--3` is depth 5, stream -3.
        parts = token[1:].split("-", 1)
        depth = parse_count(parts[0])
        stream = None
        if len(parts) == 2:
            negative = parts[1].startswith("-")
            count = parse_count(parts[1][1:] if negative else parts[1])
            stream = None if count is None else (-count if negative else count)
        if depth is None or stream is None:
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid token: {token[:64]!r}")
        return cls(stream, depth)

    @classmethod
    def past(cls, depth: int, stream: int, direction: str) -> RoomToken:
        """The point just past the event at (depth, stream) going in `direction` ("b": just
        before it, "f": just after it): where pagination goes on from."""
        return cls(stream - 1 if direction == "b" else stream, depth)

    def includes(self, depth: int, stream: int) -> bool:
        """Whether the event at (depth, stream) is at or before this point."""
        if self.depth is None:
            return stream <= self.stream
        return (depth, stream) <= (self.depth, self.stream)
