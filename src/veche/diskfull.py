"""Recognising a full disk among the errors of files, SQLite and PostgreSQL, so it is
answered and logged as what it is rather than as a bug."""

from __future__ import annotations

import errno
import sqlite3


def disk_full_at(exc: BaseException, database_url: str) -> str | None:
    """Where the disk filled up, when that is what `exc` (or what caused it) is; else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return str(seen.filename or "a file of the server")
        if isinstance(seen, sqlite3.Error) and getattr(seen, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return database_url.removeprefix("sqlite:///")
        if getattr(seen, "sqlstate", None) == "53100":  # PostgreSQL's disk_full
            return f"the PostgreSQL server's disk ({str(seen).strip().splitlines()[0]})"
        seen = seen.__cause__ or seen.__context__
    return None
