"""The user directory (spec: client-server API "User directory").

Local users come from their accounts (storage/presence.py search_users); other servers'
users are found when they share a joined room with the searcher, by the display name and
avatar of their newest member event there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from veche.storage import presence as store

if TYPE_CHECKING:
    from veche.server import HomeServer


class UserDirectoryService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def search(self, user_id: str, term: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """(results, limited) for `term` among the users `user_id` may find."""
        term = term.strip()
        rows = list(await self.hs.db.run_read(store.search_users, user_id, term, limit + 1))
        remote = await self.hs.db.run_read(store.search_remote_members, user_id, term, limit + 1)
        rows += [row for row in map(_member_row, remote) if _matches(row, term)]
        # Others before the searcher, then by user ID, as the local search orders them.
        rows.sort(key=lambda r: (r[0] == user_id, r[0]))
        results = []
        for found, displayname, avatar_url in rows[:limit]:
            entry = {"user_id": found}
            if displayname is not None:
                entry["display_name"] = displayname
            if avatar_url is not None:
                entry["avatar_url"] = avatar_url
            results.append(entry)
        return results, len(rows) > limit


def _member_row(row: tuple[str, str]) -> tuple[str, Any, Any]:
    content = orjson.loads(row[1]).get("content")
    content = content if isinstance(content, dict) else {}
    name, avatar = content.get("displayname"), content.get("avatar_url")
    return (row[0], name if isinstance(name, str) else None,
            avatar if isinstance(avatar, str) else None)


def _matches(row: tuple[str, Any, Any], term: str) -> bool:
    term = term.lower()
    return term in row[0].lower() or term in (row[1] or "").lower()
