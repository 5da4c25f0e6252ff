"""Reporting content to the server's operators (spec: client-server API "Reporting content")."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

from veche.errors import not_found
from veche.storage import accounts as account_store
from veche.storage import events as event_store
from veche.storage import presence as store

if TYPE_CHECKING:
    from veche.server import HomeServer


class ReportService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def report_event(self, reporter: str, room_id: str, event_id: str,
                           reason: str | None) -> None:
        membership = await self.hs.db.run(event_store.get_membership, room_id, reporter)
        pos = await self.hs.db.run(event_store.get_event_position, event_id)
        # One answer for both, so a report does not reveal events of rooms one is not in.
        if membership is None or membership[0] != "join" or pos is None or pos[0] != room_id:
            raise not_found("The event was not found or you are not joined to the room.")
        await self._add(reporter, room_id, event_id, None, reason)

    async def report_room(self, reporter: str, room_id: str, reason: str | None) -> None:
        if await self.hs.db.run(event_store.get_room_version, room_id) is None:
            raise not_found("The room was not found.")
        await self._add(reporter, room_id, None, None, reason)

    async def report_user(self, reporter: str, user_id: str, reason: str | None) -> None:
        if not await self.hs.db.run(account_store.user_exists, user_id):
            raise not_found("The user was not found.")
        await self._add(reporter, None, None, user_id, reason)

    async def _add(self, reporter: str, room_id: str | None, event_id: str | None,
                   user_id: str | None, reason: str | None) -> None:
        # A number, as the admin API's report IDs are (random: reports are not enumerable).
        await self.hs.db.run(store.add_report, str(secrets.randbelow(2**53)), reporter, room_id,
                             event_id, user_id, reason, int(time.time() * 1000))
