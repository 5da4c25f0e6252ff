"""Helpers shared by the /sync, receipts, push rules and presence tests."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

_txn = itertools.count()


async def room_with(make_client: Any, preset: str = "private_chat", **extra: Any) -> tuple[Any, Any, str]:
    """Alice creates a room and Bob joins it."""
    alice = await make_client().register()
    bob = await make_client().register()
    status, room = await alice.post("createRoom", {"preset": preset, "invite": [bob.user_id], **extra})
    assert status == 200, room
    room_id = room["room_id"]
    status, body = await bob.post(f"join/{quote(room_id)}", {})
    assert status == 200, body
    return alice, bob, room_id


async def send(client: Any, room_id: str, body: str, **content: Any) -> str:
    status, resp = await client.put(
        f"rooms/{quote(room_id)}/send/m.room.message/t{next(_txn)}",
        {"msgtype": "m.text", "body": body, **content})
    assert status == 200, resp
    return str(resp["event_id"])


async def set_state(client: Any, room_id: str, event_type: str, content: dict[str, Any], state_key: str = "") -> str:
    status, resp = await client.put(f"rooms/{quote(room_id)}/state/{event_type}/{quote(state_key)}", content)
    assert status == 200, resp
    return str(resp["event_id"])


async def sync(client: Any, since: str | None = None, **params: str) -> dict[str, Any]:
    if since is not None:
        params["since"] = since
    status, body = await client.get("sync", params=params)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def joined(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    return section(body, "rooms", "join")[room_id]  # type: ignore[no-any-return]


def timeline_bodies(room: dict[str, Any]) -> list[str]:
    return [e["content"].get("body") for e in events_of(room, "timeline") if e["type"] == "m.room.message"]


def section(body: dict[str, Any], *path: str) -> Any:
    """The part of a /sync answer (or of a room in it) at `path`; an empty one where the
    server left it out, as it does with empty sections (core/sync_shape.py)."""
    node: Any = body
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return [] if path[-1] in ("events", "changed", "left") else {}
        node = node[key]
    return node


def events_of(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The events of a section (`timeline`, `state`, `to_device`...), [] if left out."""
    return section(body, name, "events")  # type: ignore[no-any-return]
