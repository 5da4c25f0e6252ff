"""Bundled aggregations (client-server API "Aggregations of child events").

`bundle_aggregations` adds `unsigned["m.relations"]` to client-format events in place:
m.thread (latest_event, count, current_user_participated), m.replace (the most recent
edit by the original sender, by origin_server_ts then event ID) and m.reference (chunk of
event IDs). Redacted relations are excluded: they are no longer relations once redacted.

Every aggregation is of the child events the reader may see (history visibility): a user
who left a room must not learn of edits, replies or references sent after they left.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from veche.storage import rooms as room_store
from veche.storage.database import Txn
from veche.storage.rooms import Relation

if TYPE_CHECKING:
    from veche.server import HomeServer
    from veche.services.rooms import Visibility

AGGREGATED = ("m.thread", "m.replace", "m.reference")


def _is_redacted(event: dict[str, Any]) -> bool:
    return bool((event.get("unsigned") or {}).get("redacted_because"))


def _client(event: dict[str, Any], now_ms: int) -> dict[str, Any]:
    from veche.services.events import client_event

    return client_event(event, now_ms=now_ms)


def _visible(
    txn: Txn, rows: list[Relation], user_id: str, visibility: dict[str, Visibility]
) -> list[Relation]:
    """The rows the user may see; loads (once) the visibility of rooms not yet known."""
    from veche.services.rooms import Visibility

    unknown = {r.room_id for r in rows} - visibility.keys()
    for room_id, (hv, members, now) in room_store.visibility_histories(
        txn, sorted(unknown), user_id
    ).items():
        visibility[room_id] = Visibility(user_id, hv, members, now)
    return [r for r in rows if visibility[r.room_id].can_see(r.pos, r.view)]


def _latest_edits(
    txn: Txn, originals: dict[str, dict[str, Any]], edits: list[Relation], now_ms: int
) -> dict[str, dict[str, Any]]:
    """event_id -> client form of the newest valid edit among `edits` of each original."""
    candidates: dict[str, tuple[int, str]] = {}
    for r in edits:
        original = originals.get(r.parent)
        if original is None or r.sender != original.get("sender") or r.type != original.get("type"):
            continue
        if "state_key" in original or "state_key" in r.view:
            continue
        best = candidates.get(r.parent)
        if best is None or (r.ts, r.event_id) > best:
            candidates[r.parent] = (r.ts, r.event_id)
    if not candidates:
        return {}
    rows = room_store.get_event_rows(txn, [eid for _ts, eid in candidates.values()])
    out = {}
    for parent, (_ts, eid) in candidates.items():
        row = rows.get(eid)
        if row is not None and (row[1].get("content") or {}).get("m.new_content") is not None:
            out[parent] = _client(row[1], now_ms)
    return out


def _threads(
    txn: Txn, targets: dict[str, dict[str, Any]], replies: list[Relation], user_id: str,
    visibility: dict[str, Visibility], now_ms: int,
) -> dict[str, dict[str, Any]]:
    """root -> m.thread summary over the visible replies."""
    by_root: dict[str, list[Relation]] = {}
    for r in replies:
        by_root.setdefault(r.parent, []).append(r)
    if not by_root:
        return {}
    latest_ids = {root: max(rs, key=lambda r: r.pos).event_id for root, rs in by_root.items()}
    loaded = room_store.get_event_rows(txn, list(latest_ids.values()))
    latest = {eid: loaded[eid][1] for eid in latest_ids.values() if eid in loaded}
    edit_rows = _visible(
        txn, room_store.relations_in_room(txn, list(latest), ["m.replace"]), user_id, visibility
    )
    edits = _latest_edits(txn, latest, edit_rows, now_ms)
    out: dict[str, dict[str, Any]] = {}
    for root, rs in by_root.items():
        event = latest.get(latest_ids[root])
        if event is None:
            continue
        latest_event = _client(event, now_ms)
        edit = edits.get(event["event_id"])
        if edit is not None:
            latest_event.setdefault("unsigned", {})["m.relations"] = {"m.replace": edit}
        participated = targets[root].get("sender") == user_id or any(
            r.sender == user_id for r in rs)
        out[root] = {"latest_event": latest_event, "count": len(rs),
                     "current_user_participated": participated}
    return out


def _aggregate_txn(
    txn: Txn, events: list[dict[str, Any]], user_id: str, now_ms: int,
    visibility: dict[str, Visibility],
) -> dict[str, dict[str, Any]]:
    targets = {
        e["event_id"]: e for e in events
        if isinstance(e.get("event_id"), str) and not _is_redacted(e)
    }
    if not targets:
        return {}
    rows = _visible(
        txn, room_store.relations_in_room(txn, list(targets), AGGREGATED), user_id, visibility
    )
    by_type: dict[str, list[Relation]] = {t: [] for t in AGGREGATED}
    for r in rows:
        by_type[r.rel_type].append(r)
    result: dict[str, dict[str, Any]] = {}
    for root, summary in _threads(
        txn, targets, by_type["m.thread"], user_id, visibility, now_ms
    ).items():
        result.setdefault(root, {})["m.thread"] = summary
    for parent, edit in _latest_edits(txn, targets, by_type["m.replace"], now_ms).items():
        result.setdefault(parent, {})["m.replace"] = edit
    refs: dict[str, list[tuple[int, str]]] = {}
    for r in by_type["m.reference"]:
        refs.setdefault(r.parent, []).append((r.pos, r.event_id))
    for parent, items in refs.items():
        result.setdefault(parent, {})["m.reference"] = {
            "chunk": [{"event_id": eid} for _pos, eid in sorted(items)]
        }
    return result


async def bundle_aggregations(
    hs: HomeServer, events: list[dict[str, Any]], user_id: str,
    visibility: dict[str, Visibility] | None = None,
) -> None:
    """Add unsigned["m.relations"] to each client-format event that has aggregations the
    user may see. `visibility` (room -> Visibility) saves loading what the caller has."""
    if not events:
        return
    now_ms = int(time.time() * 1000)
    aggregations = await hs.db.run(
        _aggregate_txn, events, user_id, now_ms, dict(visibility or {}))
    if not aggregations:
        return
    for event in events:
        agg = aggregations.get(event.get("event_id"))  # type: ignore[arg-type]
        if agg:
            unsigned = event.setdefault("unsigned", {})
            unsigned["m.relations"] = {**unsigned.get("m.relations", {}), **agg}
