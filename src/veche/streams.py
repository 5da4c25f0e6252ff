"""Stream positions and sync tokens.

Everything /sync reports (room events, account data, receipts, to-device messages, device
list changes, presence) takes its position from one server-wide stream. A sync token is
`s<stream>_<typing>`: the stream position plus the in-memory typing serial.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from veche.errors import MatrixError


class StreamIdGenerator:
    """Hands out positions; `current` only advances past positions whose writes committed.

    A reader that reads up to `current` can never miss a row that commits later with a
    lower position (concurrent PostgreSQL transactions may commit out of order).
    """

    def __init__(self, last: int) -> None:
        self._last = last
        self._current = last
        self._unfinished: set[int] = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def get_next(self) -> Iterator[int]:
        with self._lock:
            self._last += 1
            pos = self._last
            self._unfinished.add(pos)
        try:
            yield pos
        finally:
            with self._lock:
                self._unfinished.discard(pos)
                self._current = (min(self._unfinished) - 1) if self._unfinished else self._last

    @property
    def current(self) -> int:
        return self._current


@dataclass(frozen=True, slots=True)
class StreamToken:
    stream: int
    typing: int = 0

    def __str__(self) -> str:
        return f"s{self.stream}_{self.typing}"

    @classmethod
    def parse(cls, token: str) -> StreamToken:
        try:
            if not token.startswith("s"):
                raise ValueError
            parts = token[1:].split("_")
            stream = int(parts[0])
            typing = int(parts[1]) if len(parts) > 1 else 0
            if stream < 0 or typing < 0 or len(parts) > 2:
                raise ValueError
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", f"Invalid token: {token[:64]!r}") from None
        return cls(stream, typing)
