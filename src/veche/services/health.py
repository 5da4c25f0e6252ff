"""Liveness and readiness, for load balancers, orchestrators and monitoring."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from veche.storage.database import ping

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

# A database that takes longer than this to answer SELECT 1 is as good as down.
READY_TIMEOUT_S = 5.0


class HealthService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def not_ready_because(self) -> str | None:
        """None when the server can serve requests, else why not."""
        if self.hs.stopping:
            return "shutting down"
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await self.hs.db.run(ping)
        except TimeoutError:
            return "the database did not answer in time"
        except Exception as e:
            logger.warning("readiness: the database failed: %s", e)
            return "the database is unavailable"
        return None
