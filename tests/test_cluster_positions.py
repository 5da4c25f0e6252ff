"""What a process may read when several write to one stream (veche.cluster.positions)."""

from __future__ import annotations

import itertools

from veche.cluster.positions import ClusterStreamIdGenerator, WriterPositions


def test_a_writer_alone_reads_what_it_committed() -> None:
    w = WriterPositions(10)
    w.allocated(11)
    w.allocated(12)
    assert w.current() == 10
    w.finished(12)
    assert w.current() == 10  # 11 is still in flight: 12 is not readable yet
    w.finished(11)
    assert w.current() == 12


def test_another_writers_position_in_flight_holds_reading_back() -> None:
    a = WriterPositions(10)
    a.heard("b", safe=10, seen=11)  # b allocated 11, still writing it
    a.allocated(12)
    a.finished(12)
    assert a.current() == 10
    a.heard("b", safe=11, seen=11)  # b committed 11, has not heard of 12 yet
    assert a.current() == 11
    a.heard("b", safe=12, seen=12)  # b, idle, heard of 12: nothing of b's below it
    assert a.current() == 12


def test_an_idle_writer_lets_the_others_positions_through() -> None:
    """b writes nothing: it is safe up to whatever it saw allocated, since its own next
    position comes from the sequence, above those."""
    a, b = WriterPositions(5), WriterPositions(5)
    a.allocated(6)
    a.finished(6)
    b.heard("a", a.safe, a.seen)
    assert b.safe == 6
    a.heard("b", b.safe, b.seen)
    assert a.current() == 6
    assert b.current() == 6


def test_a_writer_that_is_gone_holds_nothing_back() -> None:
    a = WriterPositions(0)
    a.heard("dead", safe=3, seen=4)
    a.allocated(5)
    a.finished(5)
    assert a.current() == 3
    a.forget("dead")
    assert a.current() == 5


def test_current_never_goes_back() -> None:
    a = WriterPositions(0)
    a.allocated(1)
    a.finished(1)
    assert a.current() == 1
    a.heard("late", safe=0, seen=0)  # a writer heard late: reading must not step back
    assert a.current() == 1


def test_three_writers_interleaved_never_expose_a_gap() -> None:
    """Positions from one sequence, commits in any order: whatever `current` a process
    reports, every position at or below it is committed."""
    seq = itertools.count(1)
    names = ["a", "b", "c"]
    gens: dict[str, ClusterStreamIdGenerator] = {}
    committed: set[int] = set()
    allocated: set[int] = set()

    def announcer(name: str):  # type: ignore[no-untyped-def]
        def announce(safe: int, seen: int) -> None:
            for other, gen in gens.items():
                if other != name:
                    gen.heard(name, safe, seen)
        return announce

    for n in names:
        gens[n] = ClusterStreamIdGenerator(0, lambda: next(seq), announcer(n))
    for n in names:  # everyone hears everyone at start
        gens[n].refresh()
        for other in names:
            if other != n:
                gens[other].heard(n, 0, 0)

    open_ctx: list[tuple[str, object, int]] = []
    order = [0, 1, 2, 0, 0, 2, 1, 1, 2, 0, 2, 2, 1, 0]
    for step, who in enumerate(order):
        name = names[who]
        ctx = gens[name].get_next()
        pos = ctx.__enter__()
        allocated.add(pos)
        open_ctx.append((name, ctx, pos))
        if step % 3 == 2:  # finish an older one, out of order
            victim = open_ctx.pop(len(open_ctx) // 2)
            committed.add(victim[2])
            victim[1].__exit__(None, None, None)  # type: ignore[attr-defined]
        for gen in gens.values():
            cur = gen.current
            assert all(p in committed for p in allocated if p <= cur), (cur, committed)
    for _name, ctx, pos in open_ctx:
        committed.add(pos)
        ctx.__exit__(None, None, None)  # type: ignore[attr-defined]
    assert {gen.current for gen in gens.values()} == {max(allocated)}


async def test_a_token_from_a_process_further_ahead_waits_for_this_one() -> None:
    """A /sync token handed out by another process may be ahead of this one's `current` by
    a moment: the sync waits for it (veche.cluster.node.Cluster.caught_up) instead of
    clamping it down and sending the difference again."""
    import asyncio
    import types

    from veche.cluster.node import Cluster

    seq = itertools.count(11)
    gen = ClusterStreamIdGenerator(10, lambda: next(seq), lambda safe, seen: None)
    gen.heard("other", 10, 10)
    gen.refresh()
    node = types.SimpleNamespace(stream=gen)
    assert await Cluster.caught_up(node, 10, timeout=0.1)  # type: ignore[arg-type]
    assert not await Cluster.caught_up(node, 12, timeout=0.1)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(Cluster.caught_up(node, 12, timeout=5))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    gen.heard("other", 12, 12)  # the other writer committed up to 12, this one is idle
    assert await waiting
    assert gen.current == 12
