"""Pushes and application-service events survive the death of the process that owes them.

A process sends the pushes and application-service transactions of the events it stores
(so each goes out once). Among many processes, each also writes what it owes into
cluster_outbox in the event's own transaction, and deletes it once sent. The process holding
the ORPHANS lease looks every few seconds for rows whose owner has no database session any
more (it died), takes them and sends them. A row sent just before its owner died, but not yet
deleted, goes out a second time: once, unless a process dies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from veche.storage import cluster_outbox as store

if TYPE_CHECKING:
    from veche.cluster.node import Cluster
    from veche.server import HomeServer
    from veche.services.pushers import Push
    from veche.storage.database import Txn

logger = logging.getLogger(__name__)

ORPHANS = "outbox-orphans"
SCAN_S = 2.0
PUSH, APPSERVICE = "push", "appservice"


def now_ms() -> int:
    return int(time.time() * 1000)


def install(hs: HomeServer, cluster: Cluster) -> None:
    owner = cluster.worker
    if hs.config.push.enabled:
        _install_pushes(hs, owner)
    if hs.config.app_service_config_files:
        _install_appservices(hs, owner)

    async def scan() -> None:
        hs.run_in_background(_adopt_orphans(hs, cluster))

    cluster.lease(ORPHANS, scan)
    hs.run_in_background(_resend(hs, owner))


def _install_pushes(hs: HomeServer, owner: str) -> None:
    pushers = hs.pushers
    queue_after_commit, deliver_one = pushers.queue_after_commit, pushers._deliver_one

    def queue_and_keep(txn: Txn, push: Push) -> None:
        store.add(txn, PUSH, push.user_id, push.event["event_id"], owner,
                  dataclasses.asdict(push), now_ms())
        queue_after_commit(txn, push)

    async def deliver_and_clear(push: Push) -> None:
        await deliver_one(push)  # sent, or given up on after its retries
        await hs.db.run(store.remove, PUSH, push.user_id, [push.event["event_id"]])

    pushers.queue_after_commit = queue_and_keep  # type: ignore[method-assign]
    pushers._deliver_one = deliver_and_clear  # type: ignore[method-assign]


def _install_appservices(hs: HomeServer, owner: str) -> None:
    appservices = hs.appservices
    put_transaction = appservices._put_transaction

    def on_event_persisted(txn: Txn, event: dict[str, Any], members: dict[str, str | None]) -> None:
        interested = [s for s in appservices.services
                      if s.url and appservices._interested(txn, s, event, members)]
        for service in interested:
            store.add(txn, APPSERVICE, service.id, event["event_id"], owner, event, now_ms())
        if interested:
            txn.call_after(lambda: appservices._queue(interested, event))

    async def put_and_clear(service: Any, txn_id: str, events: list[dict[str, Any]]) -> bool:
        sent = await put_transaction(service, txn_id, events)
        if sent:
            await hs.db.run(store.remove, APPSERVICE, service.id, [e["event_id"] for e in events])
        return sent

    appservices.on_event_persisted = on_event_persisted  # type: ignore[method-assign]
    appservices._put_transaction = put_and_clear  # type: ignore[method-assign]


def _dispatch(hs: HomeServer, rows: list[store.Row]) -> None:
    from veche.services.pushers import Push

    for kind, target, _event_id, _owner, payload in rows:
        if kind == PUSH and hs.config.push.enabled:
            hs.pushers._start(Push(**payload))
        elif kind == APPSERVICE and hs.config.app_service_config_files:
            service = next((s for s in hs.appservices.services if s.id == target), None)
            if service is not None:
                hs.appservices._queue([service], payload)


async def _resend(hs: HomeServer, owner: str) -> None:
    """A worker restarted under the same name sends what it owed before."""
    try:
        rows = await hs.db.run(store.mine, owner)
    except Exception:
        logger.exception("reading the outbox")
        return
    if rows:
        logger.info("sending %d push(es)/event(s) left from before the restart", len(rows))
        _dispatch(hs, rows)


async def _adopt_orphans(hs: HomeServer, cluster: Cluster) -> None:
    while True:
        try:
            live = await asyncio.to_thread(cluster.live_writers)
            rows = await hs.db.run(store.take_over, cluster.worker, live)
            if rows:
                owners = sorted({r[3] for r in rows})
                logger.info("took over %d push(es)/event(s) of %s", len(rows), ", ".join(owners))
                _dispatch(hs, rows)
        except Exception:
            logger.exception("adopting the outbox of dead workers")
        await asyncio.sleep(SCAN_S)
