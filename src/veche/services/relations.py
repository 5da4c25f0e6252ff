"""Relations and threads (client-server API "Relationships", "Threading"): the
/relations and /threads listings, and bundled aggregations ("Aggregations of child events").

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

from veche.core.numbers import parse_count
from veche.errors import invalid_param, not_found
from veche.services.events import client_event
from veche.services.rooms import parse_token
from veche.services.visibility import Visibility
from veche.storage import rooms as room_store
from veche.storage.database import Txn
from veche.storage.rooms import Relation
from veche.streams import StreamToken

if TYPE_CHECKING:
    from veche.server import HomeServer

AGGREGATED = ("m.thread", "m.replace", "m.reference")


def _is_redacted(event: dict[str, Any]) -> bool:
    return bool((event.get("unsigned") or {}).get("redacted_because"))


def _client(event: dict[str, Any], now_ms: int) -> dict[str, Any]:
    return client_event(event, now_ms=now_ms)


def _visible(
    txn: Txn, rows: list[Relation], user_id: str, visibility: dict[str, Visibility]
) -> list[Relation]:
    """The rows the user may see; loads (once) the visibility of rooms not yet known."""
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


class RelationService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def relations(
        self, room_id: str, user_id: str, event_id: str, rel_type: str | None,
        event_type: str | None, from_tok: str | None, to_tok: str | None, direction: str,
        limit: int, recurse: bool,
    ) -> dict[str, Any]:
        if direction not in ("b", "f"):
            raise invalid_param("dir must be b or f")
        start, to = parse_token(from_tok), parse_token(to_tok)
        await self.hs.rooms.room_version(room_id)
        row = await self.hs.db.run(room_store.get_event_row, event_id)
        vis = await self.hs.visibility.visibility(room_id, user_id)
        if row is None or row[0] != room_id or not vis.can_see(row[1], row[2]):
            raise not_found("Event not found")

        def collect(txn: Txn) -> list[tuple[int, dict[str, Any]]]:
            ids: list[str] = []
            frontier = [event_id]
            seen = {event_id}
            for _depth in range(3 if recurse else 1):
                rows = room_store.relation_rows(txn, frontier, [rel_type] if rel_type else None)
                frontier = []
                for _parent, _rel, eid, _s, _ts, _pos, _t in rows:
                    if eid not in seen:
                        seen.add(eid)
                        frontier.append(eid)
                        ids.append(eid)
                if not frontier:
                    break
            return sorted(room_store.get_event_rows(txn, ids).values(), key=lambda r: r[0])

        rows = await self.hs.db.run(collect)
        rows = [(so, ev) for so, ev in rows if ev.get("room_id") == room_id
                and (event_type is None or ev.get("type") == event_type) and vis.can_see(so, ev)]
        if direction == "b":
            rows.reverse()
            if start is not None:
                rows = [r for r in rows if r[0] <= start.stream]
            if to is not None:
                rows = [r for r in rows if r[0] > to.stream]
        else:
            if start is not None:
                rows = [r for r in rows if r[0] > start.stream]
            if to is not None:
                rows = [r for r in rows if r[0] <= to.stream]
        page = rows[:limit]
        chunk = [client_event(ev) for _, ev in page]
        await bundle_aggregations(self.hs, chunk, user_id, {room_id: vis})
        out: dict[str, Any] = {"chunk": chunk}
        if len(rows) > limit:
            last = page[-1][0]
            out["next_batch"] = str(StreamToken(last - 1 if direction == "b" else last))
        if start is not None:
            out["prev_batch"] = str(start)
        if recurse:
            out["recursion_depth"] = 3
        return out

    async def threads(
        self, room_id: str, user_id: str, include: str, limit: int, from_tok: str | None
    ) -> dict[str, Any]:
        if include not in ("all", "participated"):
            raise invalid_param("include must be all or participated")
        before: int | None = None
        if from_tok is not None:
            before = parse_count(from_tok[1:]) if from_tok.startswith("t") else None
            if before is None:
                raise invalid_param("Invalid from token")
        vis = await self.hs.visibility.check_can_peek(room_id, user_id)
        roots = await self.hs.db.run(room_store.thread_roots, room_id, vis.can_see)
        rows = await self.hs.db.run(room_store.get_event_rows, [r for r, _, _ in roots])
        chunk: list[dict[str, Any]] = []
        next_batch = None
        prev_latest = 0
        for root, latest, senders in roots:
            if before is not None and latest >= before:
                continue
            row = rows.get(root)
            if row is None or row[1].get("room_id") != room_id or not vis.can_see(*row):
                continue
            if include == "participated" and user_id not in senders and row[1].get("sender") != user_id:
                continue
            if len(chunk) >= limit:
                next_batch = f"t{prev_latest}"
                break
            chunk.append(client_event(row[1]))
            prev_latest = latest
        await bundle_aggregations(self.hs, chunk, user_id, {room_id: vis})
        out: dict[str, Any] = {"chunk": chunk}
        if next_batch is not None:
            out["next_batch"] = next_batch
        return out

