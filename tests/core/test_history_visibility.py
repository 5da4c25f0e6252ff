"""The spec's history visibility rules ("Room History Visibility", "Server behaviour") as a
table: the state at the event, and whether the user joined at some point after it."""

from __future__ import annotations

from typing import Any

import pytest

from veche.core.history_visibility import effective, may_see

ME = "@me:x"
MESSAGE: dict[str, Any] = {"type": "m.room.message", "content": {"body": "hi"}}


def hv_event(value: str) -> dict[str, Any]:
    return {"type": "m.room.history_visibility", "state_key": "",
            "content": {"history_visibility": value}}


def member(user_id: str, membership: str) -> dict[str, Any]:
    return {"type": "m.room.member", "state_key": user_id, "content": {"membership": membership}}


@pytest.mark.parametrize(("visibility", "membership", "joined_after", "seen"), [
    ("world_readable", None, False, True),
    ("joined", "join", False, True),
    ("invited", "join", False, True),
    ("shared", None, True, True),  # joined at some point after the event
    ("shared", "leave", True, True),
    ("shared", None, False, False),
    ("shared", "invite", False, False),
    ("invited", "invite", False, True),
    ("invited", "leave", True, False),
    ("joined", "invite", True, False),
    ("joined", None, True, False),
    ("joined", "leave", False, False),
])
def test_a_message(visibility: str, membership: str | None, joined_after: bool, seen: bool) -> None:
    assert may_see(ME, MESSAGE, visibility, membership, joined_after) is seen


def test_history_visibility_events_are_seen_if_before_or_after_allows() -> None:
    # joined -> world_readable: seen by a stranger (after allows) ...
    assert may_see(ME, hv_event("world_readable"), "joined", None, False)
    # ... and world_readable -> joined (before allows); not joined -> shared.
    assert may_see(ME, hv_event("joined"), "world_readable", None, False)
    assert not may_see(ME, hv_event("shared"), "joined", None, False)
    assert may_see(ME, hv_event("shared"), "joined", None, True)


def test_own_membership_events_are_seen_if_before_or_after_allows() -> None:
    assert may_see(ME, member(ME, "join"), "joined", None, False)  # joining
    assert may_see(ME, member(ME, "leave"), "joined", "join", False)  # leaving
    assert may_see(ME, member(ME, "ban"), "joined", "join", False)
    assert not may_see(ME, member(ME, "leave"), "joined", "invite", False)  # rejecting
    assert may_see(ME, member(ME, "leave"), "invited", "invite", False)
    # Someone else's membership follows the ordinary rules.
    assert not may_see(ME, member("@you:x", "join"), "joined", None, False)


def test_unknown_values_read_as_shared() -> None:
    assert effective("bogus") == effective(None) == effective(3) == "shared"
    assert may_see(ME, hv_event("bogus"), "joined", None, True)
