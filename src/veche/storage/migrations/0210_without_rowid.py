"""SQLite: the graph and push tables a persisted event adds rows to become WITHOUT ROWID
tables, stored in their primary key's B-tree alone. A rowid table with a PRIMARY KEY other
than an INTEGER one keeps two B-trees (the rows, and the key's index), so every event wrote
each of these rows twice: about a third of the pages a commit of one received event wrote
to the WAL (~10 of 26), and of its CPU in SQLite. Likewise the index of events by the event
they relate to takes only events that relate to one (the queries name the parent, so they
still use it): most messages have no place in it. PostgreSQL has no rowid: nothing to do.

Each table is rebuilt with the same columns and indexes; it may take a while on a big
database (event_auth holds a few rows per event)."""

from typing import Any

from yoyo import step

__depends__ = {"0200_search_pending"}

TABLES = ("event_auth", "event_edges", "event_to_state_groups", "event_forward_extremities",
          "event_search_pending", "room_push_actions", "event_push_actions")
_SUFFIX = "WITHOUT ROWID"


def _postgres(conn: Any) -> bool:
    return not type(conn).__module__.startswith("sqlite3")


def _rebuild(cur: Any, table: str, without_rowid: bool) -> None:
    (sql,) = cur.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                         (table,)).fetchone()
    indexes = [r[0] for r in cur.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,)).fetchall()]
    columns = sql[sql.index("("):].rstrip()
    if columns.upper().endswith(_SUFFIX):
        columns = columns[: -len(_SUFFIX)].rstrip()
    cur.execute(f'CREATE TABLE "{table}_rebuilt" {columns}' + (f" {_SUFFIX}" if without_rowid else ""))
    cur.execute(f'INSERT INTO "{table}_rebuilt" SELECT * FROM "{table}"')
    cur.execute(f'DROP TABLE "{table}"')
    cur.execute(f'ALTER TABLE "{table}_rebuilt" RENAME TO "{table}"')
    for index in indexes:
        cur.execute(index)


def _relations_index(cur: Any, where: str) -> None:
    cur.execute("DROP INDEX events_relations")
    cur.execute(f"CREATE INDEX events_relations ON events (relates_to_id, rel_type){where}")


def _convert(conn: Any, without_rowid: bool) -> None:
    if not _postgres(conn):
        cur = conn.cursor()
        for table in TABLES:
            _rebuild(cur, table, without_rowid)
        _relations_index(cur, " WHERE relates_to_id IS NOT NULL" if without_rowid else "")


def apply(conn: Any) -> None:
    _convert(conn, without_rowid=True)


def rollback(conn: Any) -> None:
    _convert(conn, without_rowid=False)


steps = [step(apply, rollback)]
