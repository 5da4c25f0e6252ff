"""A redaction from another server whose target never comes does not wait for ever: after
seven days (the age limit), or once 10,000 wait, the oldest are forgotten, so a peer that
redacts events that do not exist cannot grow the table without end. A target that comes
within the limit is still redacted (test_backfill.py covers that path too)."""

from __future__ import annotations

import sqlite3
from typing import Any

import aiohttp
import psycopg

from tests.conftest import Client, ServerProcess
from tests.federation.fake_origin import FakeServer, SharedRoom, q

DAY_MS = 24 * 3600 * 1000


def sql(veche: ServerProcess, statement: str, args: tuple[Any, ...] = (),
        rows: list[tuple[Any, ...]] | None = None) -> list[tuple[Any, ...]]:
    """Run a statement on the server's database (the test's clock: ages are set back)."""
    if veche.db_url.startswith("sqlite:///"):
        with sqlite3.connect(veche.db_url.removeprefix("sqlite:///"), timeout=30) as c:
            if rows is not None:
                c.executemany(statement, rows)
                return []
            return c.execute(statement, args).fetchall()
    with psycopg.connect(veche.db_url, autocommit=True) as pc:
        statement = statement.replace("?", "%s")
        if rows is not None:
            pc.cursor().executemany(statement, rows)
            return []
        cur = pc.execute(statement, args)
        return cur.fetchall() if cur.description else []


def waiting(veche: ServerProcess) -> set[str]:
    return {r[0] for r in sql(veche, "SELECT redaction_id FROM pending_redactions")}


async def test_redactions_waiting_too_long_for_their_target_are_forgotten(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    status, body = await alice.post("createRoom", {"preset": "public_chat"})
    assert status == 200, body
    room = await SharedRoom.of(alice, body["room_id"])
    rid = q(room.room_id)
    bob = origin.user("bob")
    _, join = room.build(origin, bob, "m.room.member", {"membership": "join"}, bob)
    assert (await origin.send(http, veche, [join]))[0] == 200

    def message_and_redaction(text: str) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
        said_id, said = room.build(origin, bob, "m.room.message",
                                   {"msgtype": "m.text", "body": text}, advance=False)
        red_id, red = room.build(origin, bob, "m.room.redaction", {"redacts": said_id})
        return said_id, said, red_id, red

    # Redactions whose targets have not come: they wait.
    old_said_id, old_said, old_red_id, old_red = message_and_redaction("said long ago")
    assert (await origin.send(http, veche, [old_red]))[1] == {"pdus": {old_red_id: {}}}
    assert waiting(veche) == {old_red_id}
    # Eight days pass (the row's clock set back), and another redaction comes.
    sql(veche, "UPDATE pending_redactions SET received_ts = received_ts - ?", (8 * DAY_MS,))
    new_said_id, new_said, new_red_id, new_red = message_and_redaction("said just now")
    assert (await origin.send(http, veche, [new_red]))[1] == {"pdus": {new_red_id: {}}}
    assert waiting(veche) == {new_red_id}
    # Both targets come at last: the recent redaction takes effect, the forgotten one no more.
    assert (await origin.send(http, veche, [new_said, old_said]))[1] == {
        "pdus": {new_said_id: {}, old_said_id: {}}}
    status, event = await alice.get(f"rooms/{rid}/event/{q(new_said_id)}")
    assert status == 200 and event["content"] == {}, event
    status, event = await alice.get(f"rooms/{rid}/event/{q(old_said_id)}")
    assert status == 200 and event["content"]["body"] == "said long ago", event
    assert waiting(veche) == set()

    # At most 10,000 wait: the oldest go first.
    now = sql(veche, "SELECT MAX(origin_server_ts) FROM events")[0][0]
    sql(veche, "INSERT INTO pending_redactions (target_id, redaction_id, received_ts)"
               " VALUES (?, ?, ?)",
        rows=[(f"$target{i}", f"$flood{i}", now - DAY_MS + i) for i in range(10_000)])
    _, _, last_red_id, last_red = message_and_redaction("one more")
    assert (await origin.send(http, veche, [last_red]))[1] == {"pdus": {last_red_id: {}}}
    left = waiting(veche)
    assert len(left) == 10_000 and last_red_id in left and "$flood0" not in left
    assert "$flood9999" in left
