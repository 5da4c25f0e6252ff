"""A message to a big room costs the server the same database work as one to a small room:
nothing on the send path is done per member or per device (issue: 500 members x 3 devices)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from veche.config import Config
from veche.server import HomeServer
from veche.storage import database

SERVER = "fanout.test"


class _Counter:
    """Counts SQL statements and rows written through every transaction."""

    def __init__(self) -> None:
        self.statements = 0
        self.rows = 0


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Counter]:
    c = _Counter()
    originals = {name: getattr(database.Txn, name)
                 for name in ("execute", "fetchall", "fetchone", "executemany", "write",
                              "write_many")}

    def counted(name: str) -> Any:
        def wrapper(self: database.Txn, sql: str, args: Any = ()) -> Any:
            c.statements += 1
            if name in ("executemany", "write_many"):
                args = list(args)
                c.rows += len(args)
            elif name in ("execute", "write") and sql.lstrip().upper().startswith(
                    ("INSERT", "UPDATE")):
                c.rows += 1
            return originals[name](self, sql, args)
        return wrapper

    for name in originals:
        monkeypatch.setattr(database.Txn, name, counted(name))
    yield c


async def _room(hs: HomeServer, members: int, devices: int, tag: str) -> tuple[str, list[str]]:
    users = []
    for i in range(members):
        user_id = await hs.accounts.create_user(f"{tag}{i}", None)
        for _ in range(devices):
            await hs.accounts.login_session(user_id, None, None)
        users.append(user_id)
    room_id = await hs.room_creation.create_room(users[0], {"preset": "public_chat"})
    room_id = room_id if isinstance(room_id, str) else room_id["room_id"]
    for user_id in users[1:]:
        await hs.membership.join(user_id, room_id, {})
    return room_id, users


async def _cost_per_send(hs: HomeServer, counter: _Counter, room_id: str, users: list[str]) -> tuple[float, float]:
    send = hs.rooms.send_message
    await send(users[1], "D", room_id, "m.room.message", "warm", {"msgtype": "m.text", "body": "hi"})
    counter.statements = counter.rows = 0
    for i in range(20):
        await send(users[1 + i % 3], "D", room_id, "m.room.message", f"t{i}",
                   {"msgtype": "m.text", "body": f"message {i}"})
    return counter.statements / 20, counter.rows / 20


async def test_send_cost_does_not_grow_with_members_or_devices(counter: _Counter) -> None:
    hs = HomeServer(Config(server_name=SERVER, data_dir=tempfile.mkdtemp(), dev=True))
    try:
        small = await _room(hs, members=5, devices=1, tag="s")
        big = await _room(hs, members=500, devices=3, tag="b")
        small_cost = await _cost_per_send(hs, counter, *small)
        big_cost = await _cost_per_send(hs, counter, *big)
    finally:
        await hs.close()
    assert big_cost == small_cost, (small_cost, big_cost)
    statements, rows = big_cost
    # The rows: the event, its prev edge, its two auth edges (v12: power levels, sender's
    # member), its state group, the room's new extremity, the search row, the transaction ID,
    # the sender's read position and the room's push summary. None per member or device.
    assert statements < 30 and rows <= 10, big_cost
