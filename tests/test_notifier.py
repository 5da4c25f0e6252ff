"""The notifier wakes a long-poll only once the write it announces is readable, and then
without fail: an earlier write still in flight must not make it sleep to its timeout."""

from __future__ import annotations

import asyncio

from veche.notifier import Notifier
from veche.streams import StreamIdGenerator


async def _woken(notifier: Notifier, key: str, after: int) -> asyncio.Task[bool]:
    task = asyncio.create_task(notifier.wait([key], after, timeout=5))
    await asyncio.sleep(0)
    return task


async def test_notify_is_held_until_earlier_positions_finish() -> None:
    stream = StreamIdGenerator(0)
    notifier = Notifier(stream)
    waiter = await _woken(notifier, "!b", notifier.counter)
    with stream.get_next() as a:  # room A's write, still in flight
        with stream.get_next() as b:
            pass
        notifier.notify(["!b"], b)  # room B committed, but is not readable yet
        await asyncio.sleep(0.01)
        assert stream.current < b
        assert not waiter.done()
    assert stream.current == b and a < b
    assert await asyncio.wait_for(waiter, 1) is True


async def test_default_position_covers_every_write_in_flight() -> None:
    stream = StreamIdGenerator(0)
    notifier = Notifier(stream)
    waiter = await _woken(notifier, "@u", notifier.counter)
    with stream.get_next():
        with stream.get_next():
            pass
        notifier.notify(["@u"])
        await asyncio.sleep(0.01)
        assert not waiter.done()
    assert await asyncio.wait_for(waiter, 1) is True


async def test_readable_writes_wake_at_once_and_order_is_kept() -> None:
    stream = StreamIdGenerator(0)
    notifier = Notifier(stream)
    with stream.get_next() as pos:
        pass
    waiter = await _woken(notifier, "!a", notifier.counter)
    notifier.notify(["!a"], pos)
    assert await asyncio.wait_for(waiter, 1) is True
    # held notifies are released in position order as `current` passes each
    released: list[str] = []
    first = stream.get_next()
    p1 = first.__enter__()
    second = stream.get_next()
    p2 = second.__enter__()
    third = stream.get_next()
    p3 = third.__enter__()
    third.__exit__(None, None, None)
    second.__exit__(None, None, None)
    for key, pos in (("!c", p3), ("!b", p2)):
        notifier.notify([key], pos)
    for key in ("!b", "!c"):
        task = await _woken(notifier, key, 0)
        task.add_done_callback(lambda _t, k=key: released.append(k))
    assert p1 < p2 < p3
    first.__exit__(None, None, None)
    await asyncio.sleep(0.01)
    assert sorted(released) == ["!b", "!c"]


async def test_close_wakes_everyone_at_once() -> None:
    stream = StreamIdGenerator(0)
    notifier = Notifier(stream)
    waiter = await _woken(notifier, "@u", notifier.counter)
    with stream.get_next():
        notifier.close()
        assert await asyncio.wait_for(waiter, 1) is True
