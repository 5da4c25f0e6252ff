"""The user directory (spec: client-server API "User directory")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.storage import presence as store

if TYPE_CHECKING:
    from veche.server import HomeServer


class UserDirectoryService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def search(self, user_id: str, term: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """(results, limited) for `term` among the users `user_id` may find."""
        rows = await self.hs.db.run_read(store.search_users, user_id, term.strip(), limit + 1)
        results = []
        for found, displayname, avatar_url in rows[:limit]:
            entry = {"user_id": found}
            if displayname is not None:
                entry["display_name"] = displayname
            if avatar_url is not None:
                entry["avatar_url"] = avatar_url
            results.append(entry)
        return results, len(rows) > limit
