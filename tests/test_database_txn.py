"""storage/database.py's Txn on both databases: writes held back on PostgreSQL and sent, with
their values bound client-side, in one query with the next statement that needs an answer
give the same results as running each at once (SQLite): values of every kind the storage
passes come back as they went in, a read sees the writes before it, a row count is the
asking statement's own, and a held write that fails raises from the next statement and
rolls back to a savepoint like any other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS, open_test_database
from veche.storage.database import Database, Txn

# Values that quoting could get wrong: quotes, backslashes, placeholders and percent signs in
# text, non-ASCII, bytes with every value, the largest 64-bit integers, floats, booleans, NULL.
AWKWARD = [
    (1, "it's a \\'test\\' %s %% ? $1 ;", b"\x00\x01'\\\xff", True, 0.1, None),
    (2, "\u00e9\u4e2d\U0001f600 \\x00 E'\\n'", bytes(range(256)), False, -1e300, "x"),
    (9223372036854775807, "", b"", True, 1.0, "--"),
    (-9223372036854775808, "'; DROP TABLE txn_probe; --", b"\\x41", False, 0.0, "/*"),
]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    for database in open_test_database(request.param, "veche-txn-"):
        blob = "BYTEA" if database.dialect == "postgres" else "BLOB"
        database.run_sync(
            lambda txn, blob=blob: txn.execute(
                f"CREATE TABLE txn_probe (id BIGINT PRIMARY KEY, t TEXT NOT NULL, b {blob},"
                " f BOOLEAN, d DOUBLE PRECISION, n TEXT)"))
        yield database


def _rows(txn: Txn) -> list[tuple[object, ...]]:
    rows = txn.fetchall("SELECT id, t, b, f, d, n FROM txn_probe ORDER BY id")
    return [(i, t, bytes(b), bool(f), d, n) for i, t, b, f, d, n in rows]


async def test_held_writes_come_back_as_they_went_in(db: Database) -> None:
    def body(txn: Txn) -> list[tuple[object, ...]]:
        txn.write("INSERT INTO txn_probe VALUES (?, ?, ?, ?, ?, ?)", AWKWARD[0])
        txn.write_many("INSERT INTO txn_probe VALUES (?, ?, ?, ?, ?, ?)", AWKWARD[1:])
        txn.write("UPDATE txn_probe SET n = ? WHERE id = ?", ("100%", 1))
        return _rows(txn)  # sees the writes held before it

    seen = await db.run(body)
    expected = sorted([(*AWKWARD[0][:5], "100%"), *AWKWARD[1:]], key=lambda r: r[0])
    assert seen == expected
    assert await db.run(_rows) == expected  # and they were committed


async def test_a_row_count_is_the_asking_statements_own(db: Database) -> None:
    def body(txn: Txn) -> tuple[int, int]:
        txn.write_many("INSERT INTO txn_probe (id, t) VALUES (?, ?)",
                       [(i, "a") for i in range(5)])
        txn.write("DELETE FROM txn_probe WHERE id = ?", (0,))
        updated = txn.execute("UPDATE txn_probe SET t = ? WHERE id >= ?", ("b", 2))
        txn.write("DELETE FROM txn_probe WHERE id = ?", (4,))
        return updated, txn.execute("DELETE FROM txn_probe WHERE t = ?", ("a",))

    assert await db.run(body) == (3, 1)
    assert await db.fetchall("SELECT id, t FROM txn_probe ORDER BY id") == [(2, "b"), (3, "b")]


async def test_a_failing_held_write_raises_from_the_next_statement_and_rolls_back(
    db: Database,
) -> None:
    def body(txn: Txn) -> str:
        txn.write("INSERT INTO txn_probe (id, t) VALUES (?, ?)", (1, "kept"))
        txn.write("SAVEPOINT probe")
        txn.write("INSERT INTO txn_probe (id, t) VALUES (?, ?)", (2, "undone"))
        try:  # on SQLite the write itself raises, on PostgreSQL the read it went with
            txn.write("INSERT INTO txn_probe (id, t) VALUES (?, ?)", (1, "duplicate"))
            txn.fetchall("SELECT id FROM txn_probe")
        except Exception as e:
            failure = type(e).__name__
            txn.execute("ROLLBACK TO SAVEPOINT probe")
        txn.write("RELEASE SAVEPOINT probe")
        txn.write("INSERT INTO txn_probe (id, t) VALUES (?, ?)", (3, "after"))
        return failure

    assert await db.run(body) in ("IntegrityError", "UniqueViolation")
    assert await db.fetchall("SELECT id, t FROM txn_probe ORDER BY id") == [
        (1, "kept"), (3, "after")]


async def test_a_failing_write_at_commit_commits_nothing(db: Database) -> None:
    def body(txn: Txn) -> None:
        txn.write("INSERT INTO txn_probe (id, t) VALUES (?, ?)", (1, "a"))
        txn.write("INSERT INTO txn_probe (id, t) VALUES (?, ?)", (1, "b"))

    with pytest.raises(Exception) as failed:
        await db.run(body)
    assert type(failed.value).__name__ in ("IntegrityError", "UniqueViolation")
    assert await db.fetchall("SELECT id FROM txn_probe") == []
    assert await db.fetchval("SELECT 1") == 1  # the connection is usable again


async def test_held_reads_see_the_writes_before_them(db: Database) -> None:
    def body(txn: Txn) -> tuple[object, ...]:
        txn.write_many("INSERT INTO txn_probe (id, t) VALUES (?, ?)", [(1, "a"), (2, "b")])
        first = txn.fetchall_later("SELECT id, t FROM txn_probe ORDER BY id")
        count = txn.fetchall_later("SELECT COUNT(*) FROM txn_probe WHERE t = ?", ("b",))
        txn.write("UPDATE txn_probe SET t = ? WHERE id = ?", ("b", 1))
        nothing = txn.fetchall_later("SELECT id FROM txn_probe WHERE id > ?", (5,))
        after = txn.fetchall("SELECT id, t FROM txn_probe ORDER BY id")  # sends them all
        txn.write("DELETE FROM txn_probe WHERE id = ?", (2,))
        last = txn.fetchall_later("SELECT id FROM txn_probe")
        return count(), first(), nothing(), after, last()  # asked for out of order

    assert await db.run(body) == (
        [(1,)], [(1, "a"), (2, "b")], [], [(1, "b"), (2, "b")], [(1,)])
