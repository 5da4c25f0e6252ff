"""Migration 0210 on SQLite: the tables a persisted event adds rows to are rebuilt as WITHOUT
ROWID tables, with every row and index kept, and the relations index takes only events that
relate to another (and still serves the relation queries); its rollback undoes both."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from yoyo import get_backend, read_migrations

from veche.storage.database import MIGRATIONS_DIR

MIGRATION = "0210_without_rowid"
TABLES = ("event_auth", "event_edges", "event_to_state_groups", "event_forward_extremities",
          "event_search_pending", "room_push_actions", "event_push_actions")


def _schema(path: Path) -> dict[str, tuple[bool, list[str], list[tuple[object, ...]]]]:
    """table -> (WITHOUT ROWID?, its index definitions, its rows)."""
    with sqlite3.connect(path) as conn:
        out = {}
        for table in TABLES:
            (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
            indexes = sorted(r[0] for r in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                " AND sql IS NOT NULL", (table,)))
            rows = sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            out[table] = (sql.rstrip().endswith("WITHOUT ROWID"), indexes, rows)
    conn.close()
    return out


def test_tables_become_without_rowid_and_keep_their_rows_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "veche.db"
    backend = get_backend(f"sqlite:///{path}")
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        backend.apply_migrations(backend.to_apply(migrations.filter(lambda m: m.id < MIGRATION)))
    with sqlite3.connect(path) as conn:
        for i in range(3):
            event_id = f"$e{i}"
            conn.executemany("INSERT INTO event_auth VALUES (?, ?)", [(event_id, "$c"), (event_id, "$p")])
            conn.execute("INSERT INTO event_edges VALUES (?, ?)", (event_id, f"$e{i - 1}"))
            conn.execute("INSERT INTO event_to_state_groups VALUES (?, ?, ?)", (event_id, 2, None))
            conn.execute("INSERT INTO event_search_pending VALUES (?, '!r', 'content.body', ?, 'hi')",
                         (event_id, i))
            conn.execute("INSERT INTO room_push_actions VALUES ('!r', ?, '@b:x', NULL, 1, 0)", (i,))
            conn.execute("INSERT INTO event_push_actions VALUES ('@a:x', '!r', ?, ?, 'main', 1, 1)",
                         (i, event_id))
        conn.execute("INSERT INTO event_forward_extremities VALUES ('!r', '$e2')")
    conn.close()
    before = _schema(path)
    assert not any(without for without, _, _ in before.values())

    with backend.lock():
        backend.apply_migrations(backend.to_apply(migrations))
    after = _schema(path)
    assert all(without for without, _, _ in after.values())
    for table in TABLES:
        assert after[table][1:] == before[table][1:], table  # the same indexes and rows
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # The keys still hold.
        try:
            conn.execute("INSERT INTO event_auth VALUES ('$e0', '$c')")
        except sqlite3.IntegrityError:
            pass
        else:
            raise AssertionError("a duplicate event_auth row was taken")

        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT event_id FROM events WHERE relates_to_id IN ('$e0', '$e1')"
            " AND rel_type IN ('m.annotation') AND redacted_by IS NULL").fetchall()
        assert "USING INDEX events_relations" in " ".join(str(row[-1]) for row in plan), plan
        (index,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events_relations'"
                                ).fetchone()
        assert index.endswith("WHERE relates_to_id IS NOT NULL")
    conn.close()

    with backend.lock():
        backend.rollback_migrations(migrations.filter(lambda m: m.id == MIGRATION))
    assert _schema(path) == before
    with sqlite3.connect(path) as conn:
        (index,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events_relations'"
                                ).fetchone()
        assert "WHERE" not in index
    conn.close()
    backend.connection.close()
