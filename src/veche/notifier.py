"""Wakes long-polling /sync requests when something they care about happens.

The interface is deliberately small so that a multi-worker deployment can swap in a
NATS or Redis implementation that forwards `notify` calls between processes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veche.cluster.positions import ClusterStreamIdGenerator
    from veche.streams import StreamIdGenerator


class Notifier:
    """In-process notifier.

    Keys are user IDs and room IDs. `counter` increases on every notify; a waiter passes
    the counter it read before computing its (empty) response, so a notify that happened
    in between wakes it at once instead of being lost.

    A write is only readable once the stream's `current` has passed its position, which an
    earlier write still in flight (another room's commit) can hold back. A waiter woken
    before then would find nothing and sleep again with nothing left to wake it, so a
    notify is held until `current` reaches the writer's position.
    """

    def __init__(self, stream: StreamIdGenerator | ClusterStreamIdGenerator | None = None) -> None:
        self.counter = 0
        self._closed = False
        self._last: dict[str, int] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._stream = stream
        self._held: list[tuple[int, int, list[str]]] = []  # heap of (position, seq, keys)
        self._seq = itertools.count()
        # Set by veche.cluster: passes every notify on to the other processes.
        self.publish: Callable[[list[str], int], None] | None = None
        if stream is not None:
            stream.on_advance(self._release)

    def notify(self, keys: Iterable[str], position: int | None = None) -> None:
        """Wake the waiters on `keys` once everything up to `position` is readable (by
        default, every position handed out so far: the caller's write is among them)."""
        if self._stream is not None and position is None:
            position = self._stream.last
        if self.publish is not None and position is not None:
            keys = list(keys)
            self.publish(keys, position)
        self.notify_local(keys, position)

    def notify_local(self, keys: Iterable[str], position: int | None) -> None:
        """Wake this process's waiters (another process's notify arrives here)."""
        if self._stream is not None and position is not None:
            if position > self._stream.current:
                heapq.heappush(self._held, (position, next(self._seq), list(keys)))
                return
        self._deliver(keys)

    def _release(self, current: int) -> None:
        while self._held and self._held[0][0] <= current:
            self._deliver(heapq.heappop(self._held)[2])

    def _deliver(self, keys: Iterable[str]) -> None:
        self.counter += 1
        for key in keys:
            self._last[key] = self.counter
            waiters = self._waiters.pop(key, None)
            if waiters:
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)

    def notify_all(self) -> None:
        """Wake every waiter now (something all of them may have been waiting for moved)."""
        self._deliver(list(self._waiters))

    @property
    def waiting(self) -> int:
        """How many waits are parked now (long-polling /syncs)."""
        return len({id(f) for futs in self._waiters.values() for f in futs})

    def close(self) -> None:
        """Shutting down: end every wait now, and don't start new ones."""
        self._closed = True
        self.notify_all()

    async def wait(self, keys: Iterable[str], after: int, timeout: float) -> bool:
        """Wait until one of `keys` is notified after `after`; False on timeout."""
        if self._closed:
            return False
        keys = list(keys)
        if any(self._last.get(k, 0) > after for k in keys):
            return True
        if timeout <= 0:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._waiters[key].add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[key]
