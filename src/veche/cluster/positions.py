"""Stream positions shared by many processes.

Every process hands out positions from one PostgreSQL sequence, so they are unique across
processes, but they commit out of order: process A may commit 12 while B still writes 11.
A reader must not serve past 11 until B's 11 is committed (or rolled back), else a /sync
token would step over it for good. So every writer publishes on the bus the position up to
which it will never commit again ("safe"), and a process reads up to the minimum of every
live writer's safe position.

A writer with nothing in flight is safe up to the highest position it has seen anyone
allocate: its own next position comes from the sequence, above all of those. That is how
idle writers let the others' positions through.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class WriterPositions:
    """The pure bookkeeping: this writer's positions in flight and what the others said."""

    def __init__(self, start: int, current: int | None = None) -> None:
        self._unfinished: set[int] = set()
        self._seen = start  # the highest position anyone allocated, as far as we know
        self._others: dict[str, int] = {}
        # A process that just started knows nothing of the others' writes in flight: it
        # starts from below them and moves up once it has heard them.
        self._current = start if current is None else current

    def allocated(self, pos: int) -> None:
        self._unfinished.add(pos)
        self._seen = max(self._seen, pos)

    def saw(self, pos: int) -> None:
        self._seen = max(self._seen, pos)

    def finished(self, pos: int) -> None:
        self._unfinished.discard(pos)

    @property
    def safe(self) -> int:
        """No position at or below this will ever be committed by this writer again."""
        if self._unfinished:
            return min(self._unfinished) - 1
        return self._seen

    @property
    def seen(self) -> int:
        return self._seen

    def heard(self, writer: str, safe: int, seen: int) -> None:
        """Another writer's announcement (its positions never go back)."""
        self._others[writer] = max(safe, self._others.get(writer, safe))
        self._seen = max(self._seen, seen, safe)

    def forget(self, writer: str) -> None:
        """The writer is gone (its database session ended): it holds nothing back any more."""
        self._others.pop(writer, None)

    def writers(self) -> list[str]:
        return list(self._others)

    def current(self) -> int:
        """Everything at or below this is committed by every writer: readable."""
        self._current = max(self._current, min([self.safe, *self._others.values()]))
        return self._current


class ClusterStreamIdGenerator:
    """The StreamIdGenerator of a process among many (same interface, see veche.streams).

    `allocate` takes the next value of the shared sequence (a blocking round trip, done on
    the event loop: it takes well under a millisecond on a local network). `announce` is
    called with (safe, seen) whenever this writer's safe position moves.
    """

    def __init__(self, start: int, allocate: Callable[[], int],
                 announce: Callable[[int, int], None]) -> None:
        self.positions = WriterPositions(start, current=0)
        self._allocate = allocate
        self._announce = announce
        self._lock = threading.Lock()
        self._last = start
        self._announced = (start, start)
        self._listeners: list[Callable[[int], None]] = []

    def on_advance(self, listener: Callable[[int], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[int], None]) -> None:
        self._listeners.remove(listener)

    @contextlib.contextmanager
    def get_next(self, *, timeline: bool = False) -> Iterator[int]:
        with self._lock:
            pos = self._allocate()
            self.positions.allocated(pos)
            self._last = max(self._last, pos)
        try:
            yield pos
        finally:
            with self._lock:
                self.positions.finished(pos)
            self._changed()

    def not_timeline(self, pos: int) -> None:
        pass

    def timeline_only_after(self, pos: int) -> bool:
        """Never known: the other processes' positions are not told apart."""
        return False

    def saw(self, pos: int) -> None:
        """A position allocated under one already in flight (which keeps it unreadable)."""
        with self._lock:
            self.positions.saw(pos)
            self._last = max(self._last, pos)

    def heard(self, writer: str, safe: int, seen: int) -> None:
        with self._lock:
            self.positions.heard(writer, safe, seen)
        self._changed()

    def forget(self, writer: str) -> None:
        with self._lock:
            self.positions.forget(writer)
        self._changed()

    def refresh(self) -> None:
        """Compute `current` now (after hearing the other writers at start)."""
        self._changed()

    def _changed(self) -> None:
        with self._lock:
            before = self.positions._current
            current = self.positions.current()
            mine = (self.positions.safe, self.positions.seen)
            announce = mine != self._announced
            self._announced = mine
        if announce:
            self._announce(*mine)
        if current != before:
            for listener in list(self._listeners):
                listener(current)

    def announcement(self) -> tuple[int, int]:
        """(safe, seen) now, for the periodic heartbeat."""
        with self._lock:
            return self.positions.safe, self.positions.seen

    def reserved(self, upto: int | None) -> bool:
        return False  # the sequence is durable: no reservation to keep ahead of

    @property
    def current(self) -> int:
        return self.positions._current

    @property
    def last(self) -> int:
        return self._last
