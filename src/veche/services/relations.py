"""Bundled aggregations (client-server API "Aggregations of child events").

`bundle_aggregations` adds `unsigned["m.relations"]` to client-format events in place:
m.thread (latest_event, count, current_user_participated), m.replace (the most recent
edit by the original sender, by origin_server_ts then event ID) and m.reference (chunk of
event IDs). Redacted relations are excluded: they are no longer relations once redacted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from veche.storage import rooms as room_store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

AGGREGATED = ("m.thread", "m.replace", "m.reference")


def _is_redacted(event: dict[str, Any]) -> bool:
    return bool((event.get("unsigned") or {}).get("redacted_because"))


def _client(event: dict[str, Any], now_ms: int) -> dict[str, Any]:
    from veche.services.events import client_event

    return client_event(event, now_ms=now_ms)


def _latest_edits(
    txn: Txn, originals: dict[str, dict[str, Any]], now_ms: int
) -> dict[str, dict[str, Any]]:
    """event_id -> client form of the newest valid edit of each original event."""
    candidates: dict[str, tuple[int, str]] = {}
    for parent, _rel, event_id, sender, ts, _pos, etype in room_store.relation_rows(
        txn, list(originals), ["m.replace"]
    ):
        original = originals[parent]
        if sender != original.get("sender") or etype != original.get("type"):
            continue
        if "state_key" in original:
            continue
        best = candidates.get(parent)
        if best is None or (ts, event_id) > best:
            candidates[parent] = (ts, event_id)
    if not candidates:
        return {}
    rows = room_store.get_event_rows(txn, [eid for _ts, eid in candidates.values()])
    out = {}
    for parent, (_ts, eid) in candidates.items():
        row = rows.get(eid)
        if row is not None:
            edit = row[1]
            if "state_key" in edit or (edit.get("content") or {}).get("m.new_content") is None:
                continue
            out[parent] = _client(edit, now_ms)
    return out


def _aggregate_txn(
    txn: Txn, events: list[dict[str, Any]], user_id: str, now_ms: int
) -> dict[str, dict[str, Any]]:
    targets = {
        e["event_id"]: e for e in events
        if isinstance(e.get("event_id"), str) and not _is_redacted(e)
    }
    if not targets:
        return {}
    result: dict[str, dict[str, Any]] = {}
    # m.thread
    summaries = room_store.thread_summaries(txn, list(targets), user_id)
    if summaries:
        latest_rows: dict[int, str] = {}
        for root, (_n, latest_pos, _mine) in summaries.items():
            latest_rows[latest_pos] = root
        clause, args = txn.in_list("stream_ordering", list(latest_rows))
        latest_events: dict[str, dict[str, Any]] = {}
        for so, js in txn.fetchall(f"SELECT stream_ordering, json FROM events WHERE {clause}", args):
            latest_events[latest_rows[int(so)]] = orjson.loads(js)
        latest_clients = {root: _client(ev, now_ms) for root, ev in latest_events.items()}
        edits = _latest_edits(
            txn, {ev["event_id"]: ev for ev in latest_events.values()}, now_ms
        )
        for root, (count, _pos, mine) in summaries.items():
            latest = latest_clients.get(root)
            if latest is None:
                continue
            edit = edits.get(latest["event_id"])
            if edit is not None:
                latest["unsigned"]["m.relations"] = {"m.replace": edit}
            participated = mine or targets[root].get("sender") == user_id
            result.setdefault(root, {})["m.thread"] = {
                "latest_event": latest, "count": count,
                "current_user_participated": participated,
            }
    # m.replace
    for parent, edit in _latest_edits(txn, targets, now_ms).items():
        result.setdefault(parent, {})["m.replace"] = edit
    # m.reference
    refs: dict[str, list[tuple[int, str]]] = {}
    for parent, _rel, event_id, _s, _ts, pos, _t in room_store.relation_rows(
        txn, list(targets), ["m.reference"]
    ):
        refs.setdefault(parent, []).append((pos, event_id))
    for parent, items in refs.items():
        result.setdefault(parent, {})["m.reference"] = {
            "chunk": [{"event_id": eid} for _pos, eid in sorted(items)]
        }
    return result


async def bundle_aggregations(hs: HomeServer, events: list[dict[str, Any]], user_id: str) -> None:
    """Add unsigned["m.relations"] to each client-format event that has aggregations."""
    if not events:
        return
    now_ms = int(time.time() * 1000)
    aggregations = await hs.db.run(_aggregate_txn, events, user_id, now_ms)
    if not aggregations:
        return
    for event in events:
        agg = aggregations.get(event.get("event_id"))  # type: ignore[arg-type]
        if agg:
            unsigned = event.setdefault("unsigned", {})
            unsigned["m.relations"] = {**unsigned.get("m.relations", {}), **agg}
