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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from veche.core.numbers import parse_count
from veche.errors import invalid_param, not_found
from veche.services.events import client_event
from veche.services.rooms import parse_room_token
from veche.services.visibility import Visibility
from veche.storage import history
from veche.storage import rooms as room_store
from veche.storage.database import Txn
from veche.storage.history import TimelineRow
from veche.storage.rooms import Relation
from veche.streams import RoomToken

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
    unknown = sorted({r.room_id for r in rows} - visibility.keys())
    visibility.update(Visibility.load_many(txn, unknown, user_id))
    by_room: dict[str, list[Relation]] = {}
    for r in rows:
        by_room.setdefault(r.room_id, []).append(r)
    seen: set[str] = set()
    for room_id, in_room in by_room.items():
        mask = visibility[room_id].visible(txn, [(r.event_id, r.view) for r in in_room])
        seen.update(r.event_id for r, ok in zip(in_room, mask, strict=True) if ok)
    return [r for r in rows if r.event_id in seen]


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
    latest_ids = {root: max(rs, key=lambda r: (r.depth, r.pos)).event_id for root, rs in by_root.items()}
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
    return _aggregate_later(txn, events, user_id, now_ms, visibility)()


def _aggregate_later(
    txn: Txn, events: list[dict[str, Any]], user_id: str, now_ms: int,
    visibility: dict[str, Visibility],
) -> Callable[[], dict[str, dict[str, Any]]]:
    """`_aggregate_txn` with its first read held (`Txn.fetchall_later`)."""
    targets = {
        e["event_id"]: e for e in events
        if isinstance(e.get("event_id"), str) and not _is_redacted(e)
    }
    if not targets:
        return dict
    relations = room_store.relations_in_room_later(txn, list(targets), AGGREGATED)
    return lambda: _aggregate_rows(txn, targets, relations(), user_id, now_ms, visibility)


def _aggregate_rows(
    txn: Txn, targets: dict[str, dict[str, Any]], relations: list[Relation], user_id: str,
    now_ms: int, visibility: dict[str, Visibility],
) -> dict[str, dict[str, Any]]:
    rows = _visible(txn, relations, user_id, visibility)
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
    refs: dict[str, list[tuple[int, int, str]]] = {}
    for r in by_type["m.reference"]:
        refs.setdefault(r.parent, []).append((r.depth, r.pos, r.event_id))
    for parent, items in refs.items():
        result.setdefault(parent, {})["m.reference"] = {
            "chunk": [{"event_id": eid} for *_pos, eid in sorted(items)]
        }
    return result


def aggregations_later(
    txn: Txn, events: list[dict[str, Any]], user_id: str, now_ms: int,
) -> Callable[[], dict[str, dict[str, Any]]]:
    """Event ID -> the aggregations (`unsigned["m.relations"]`) of those of `events` (stored
    or client format) that have some the user may see, read in the caller's transaction
    when called; its first read is held (`Txn.fetchall_later`)."""
    return _aggregate_later(txn, events, user_id, now_ms, {})


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


def _thread_token(raw: str) -> RoomToken:
    """A /threads `from`: our next_batch, or one from before tokens were topological
    (`t<stream>`: threads whose latest reply came before that position)."""
    legacy = parse_count(raw[1:]) if raw.startswith("t") and "-" not in raw else None
    if legacy is not None:
        return RoomToken(max(legacy - 1, 0))
    return RoomToken.parse(raw)


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
        start, to = parse_room_token(from_tok), parse_room_token(to_tok)
        await self.hs.rooms.room_version(room_id)

        def collect(txn: Txn) -> tuple[Visibility, list[TimelineRow]] | None:
            parent = history.get_timeline_event(txn, event_id)
            if parent is None or parent[0] != room_id:
                return None
            vis = Visibility.load(txn, room_id, user_id)
            if not vis.visible_rows(txn, [parent[1]])[0]:
                return None
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
            found = [r for r in history.get_timeline_events(txn, ids).values()
                     if r.event.get("room_id") == room_id
                     and (event_type is None or r.event.get("type") == event_type)]
            mask = vis.visible_rows(txn, found)
            visible = [r for r, ok in zip(found, mask, strict=True) if ok]
            return vis, sorted(visible, key=lambda r: (r.depth, r.stream))

        collected = await self.hs.db.run(collect)
        if collected is None:
            raise not_found("Event not found")
        vis, rows = collected
        if direction == "b":
            rows.reverse()
            if start is not None:
                rows = [r for r in rows if start.includes(r.depth, r.stream)]
            if to is not None:
                rows = [r for r in rows if not to.includes(r.depth, r.stream)]
        else:
            if start is not None:
                rows = [r for r in rows if not start.includes(r.depth, r.stream)]
            if to is not None:
                rows = [r for r in rows if to.includes(r.depth, r.stream)]
        page = rows[:limit]
        chunk = [client_event(r.event) for r in page]
        await bundle_aggregations(self.hs, chunk, user_id, {room_id: vis})
        out: dict[str, Any] = {"chunk": chunk}
        if len(rows) > limit:
            out["next_batch"] = str(RoomToken.past(page[-1].depth, page[-1].stream, direction))
        if from_tok is not None:
            out["prev_batch"] = from_tok
        if recurse:
            out["recursion_depth"] = 3
        return out

    async def threads(
        self, room_id: str, user_id: str, include: str, limit: int, from_tok: str | None
    ) -> dict[str, Any]:
        if include not in ("all", "participated"):
            raise invalid_param("include must be all or participated")
        before = _thread_token(from_tok) if from_tok is not None else None
        vis = await self.hs.visibility.check_can_peek(room_id, user_id)

        def load(txn: Txn) -> list[tuple[tuple[int, int], list[str], dict[str, Any]]]:
            """(latest visible reply's position, reply senders, root) of the room's threads
            the user may see, newest reply first; judged on the replies they may see."""
            replies = room_store.thread_replies(txn, room_id)
            mask = vis.visible(txn, [(r.event_id, r.view) for r in replies])
            groups: dict[str, tuple[tuple[int, int], set[str]]] = {}
            for r, ok in zip(replies, mask, strict=True):
                if ok:
                    latest, senders = groups.get(r.root, ((0, 0), set()))
                    senders.add(r.sender)
                    groups[r.root] = (max(latest, (r.depth, r.pos)), senders)
            roots = [r for r in history.get_timeline_events(txn, list(groups)).values()
                     if r.event.get("room_id") == room_id]
            mask = vis.visible_rows(txn, roots)
            out = [(groups[r.event["event_id"]][0], sorted(groups[r.event["event_id"]][1]), r.event)
                   for r, ok in zip(roots, mask, strict=True) if ok]
            out.sort(key=lambda t: t[0], reverse=True)
            return out

        chunk: list[dict[str, Any]] = []
        next_batch = None
        prev_latest = (0, 0)
        for latest, senders, root in await self.hs.db.run(load):
            if before is not None and not before.includes(*latest):
                continue
            if include == "participated" and user_id not in senders and root.get("sender") != user_id:
                continue
            if len(chunk) >= limit:
                next_batch = str(RoomToken.past(*prev_latest, "b"))
                break
            chunk.append(client_event(root))
            prev_latest = latest
        await bundle_aggregations(self.hs, chunk, user_id, {room_id: vis})
        out: dict[str, Any] = {"chunk": chunk}
        if next_batch is not None:
            out["next_batch"] = next_batch
        return out
