"""Filters uploaded by clients (spec: client-server API "Filtering")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.core.filters import validate_filter
from veche.errors import MatrixError
from veche.storage import sync as store

if TYPE_CHECKING:
    from veche.server import HomeServer


class FilterService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def create(self, user_id: str, body: Any) -> str:
        try:
            normalised = validate_filter(body)
        except ValueError as e:
            raise MatrixError(400, "M_BAD_JSON", str(e)) from None
        return str(await self.hs.db.run(store.add_filter, user_id, normalised))

    async def get(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await self.hs.db.run(store.get_filter, user_id, filter_id)
        return found
