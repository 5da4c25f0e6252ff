"""Mutual rooms: the rooms both users are joined to, in batches; bad user IDs are refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.sync_helpers import room_with


async def test_mutual_rooms(make_client: Any) -> None:
    alice, bob, shared = await room_with(make_client)
    # A room bob was invited to but never joined, and one he left, are not shared.
    invited = (await alice.post("createRoom", {"invite": [bob.user_id]}))[1]["room_id"]
    left = (await alice.post("createRoom", {"preset": "public_chat"}))[1]["room_id"]
    assert (await bob.post(f"join/{quote(left)}", {}))[0] == 200
    assert (await bob.post(f"rooms/{quote(left)}/leave", {}))[0] == 200
    assert invited and left
    status, body = await alice.get("/_matrix/client/v1/mutual_rooms", params={"user_id": bob.user_id})
    assert (status, body) == (200, {"joined": [shared], "count": 1})
    carol = await make_client().register()
    assert (await alice.get("/_matrix/client/v1/mutual_rooms", params={"user_id": carol.user_id}))[1] \
        == {"joined": [], "count": 0}
    for params in ({}, {"user_id": "not-a-user"}, {"user_id": alice.user_id},
                   {"user_id": bob.user_id, "from": "x"}):
        assert (await alice.get("/_matrix/client/v1/mutual_rooms", params=params))[0] == 400, params
