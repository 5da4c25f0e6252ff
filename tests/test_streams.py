"""The stream position generator: `current` never passes an unfinished position or the
durably reserved range; it knows whether only timeline events came after a position."""

from __future__ import annotations

from veche.streams import RESERVE_AHEAD, StreamIdGenerator


def test_current_waits_for_unfinished_positions() -> None:
    gen = StreamIdGenerator(10)
    with gen.get_next() as a:
        with gen.get_next() as b:
            assert (a, b) == (11, 12)
        assert gen.current == 10  # 12 finished, but 11 has not
    assert gen.current == 12


def test_reservation_is_extended_ahead_and_caps_current() -> None:
    asked: list[int] = []
    gen = StreamIdGenerator(0, reserved=RESERVE_AHEAD, extend=asked.append)
    for _ in range(RESERVE_AHEAD // 2):
        with gen.get_next():
            pass
    assert asked == []
    with gen.get_next():
        pass
    assert asked == [RESERVE_AHEAD + RESERVE_AHEAD]  # asked once, half a reserve early
    # positions beyond the stored reservation are handed out but not yet readable
    for _ in range(RESERVE_AHEAD):
        with gen.get_next():
            pass
    assert asked == [2 * RESERVE_AHEAD]
    assert gen.current == RESERVE_AHEAD
    assert gen.reserved(asked[0]) is True
    assert gen.current == RESERVE_AHEAD + RESERVE_AHEAD // 2 + 1
    # a failed store is asked again at the next position
    with gen.get_next():
        pass
    assert len(asked) == 2
    assert gen.reserved(None) is False
    with gen.get_next():
        pass
    assert len(asked) == 3


def test_timeline_only_after_tells_whether_anything_but_timelines_moved() -> None:
    gen = StreamIdGenerator(10)
    assert gen.timeline_only_after(10)
    assert not gen.timeline_only_after(9)  # positions from before the start may be anything
    with gen.get_next(timeline=True) as message:
        pass
    assert gen.timeline_only_after(10)
    with gen.get_next() as receipt:  # the default: anything
        pass
    assert not gen.timeline_only_after(message)
    assert gen.timeline_only_after(receipt)
    with gen.get_next(timeline=True) as merge:
        gen.not_timeline(merge)  # a message that moved state (a fork's resolution)
    assert not gen.timeline_only_after(receipt)
    assert gen.timeline_only_after(merge)
