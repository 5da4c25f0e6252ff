"""The message bus between processes (NATS core pub/sub: nothing here needs persistence).

Subjects, all under `veche.<server name>.`:
- `pos`: a writer's (safe, seen) stream positions, on every change and once a second;
- `notify`: keys (users, rooms) to wake, with the position the change is at;
- `inval`: a cache entry that changed, to forget on every process (or shared in-memory
  state that changed, such as typing notices);
- `bye`: a process stopping cleanly (it holds nothing back any more).
Every message names the process that sent it; a process ignores its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

logger = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], None]
SUBJECTS = ("pos", "notify", "inval", "bye")


class Bus:
    def __init__(self, url: str, server_name: str, worker: str) -> None:
        self.url = url
        self.worker = worker
        # NATS subjects are dot-separated tokens: a server name's dots and colon stay out.
        self._prefix = "veche." + "".join(c if c.isalnum() else "_" for c in server_name) + "."
        self._nc: Any = None
        self._handlers: dict[str, Handler] = {}

    async def connect(self, handlers: dict[str, Handler],
                      on_reconnect: Callable[[], Awaitable[None]] | None = None) -> None:
        import nats

        self._handlers = handlers

        async def disconnected() -> None:
            logger.warning("lost the bus at %s; reconnecting", self.url)

        async def reconnected() -> None:
            logger.info("bus at %s back", self.url)
            if on_reconnect is not None:
                await on_reconnect()

        async def error(e: Exception) -> None:
            logger.warning("bus: %s", e)

        self._nc = await nats.connect(
            self.url, name=f"veche-{self.worker}", max_reconnect_attempts=-1,
            reconnect_time_wait=0.5, disconnected_cb=disconnected,
            reconnected_cb=reconnected, error_cb=error,
        )
        for subject in SUBJECTS:
            await self._nc.subscribe(self._prefix + subject, cb=self._receive)

    async def _receive(self, msg: Any) -> None:
        kind = msg.subject[len(self._prefix):]
        try:
            body = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            return
        sender = body.get("w")
        if sender == self.worker or not isinstance(sender, str):
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            try:
                handler(sender, body)
            except Exception:
                logger.exception("handling a %s message from %s", kind, sender)

    def publish(self, kind: str, body: dict[str, Any]) -> None:
        """Queue a message (NATS's client buffers it and flushes it within milliseconds);
        call on the event loop."""
        if self._nc is None or self._nc.is_closed:
            return
        body["w"] = self.worker
        try:
            # publish() is a coroutine only to wait for buffer room; tasks start in the
            # order they were made, so messages leave in the order they were published.
            asyncio.ensure_future(self._nc.publish(self._prefix + kind, orjson.dumps(body)))
        except Exception:
            logger.exception("publishing %s on the bus", kind)

    async def flush(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.flush(timeout=2)

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._nc.drain()
            except Exception:  # noqa: BLE001 - shutting down
                await self._nc.close()
