"""The one persist step for a room event with its context (the state before it, rejected or
not, outlier or not), for local sends (services/events.py) and events from elsewhere alike.

- The event and its place in the graph are stored (storage/events.py, event_graph.py).
- Current state follows the state of the room's forward extremities after the event: one
  extremity's state group, or the state resolution (core/state_res.py) of several.
  `current_state` and `room_memberships` are moved by the difference between the old and the
  new current state only. An event citing exactly the extremities its context saw builds on
  current state (its state before *is* the resolution over them), so it moves current state
  by its own key alone: a message in an unforked room resolves and reads nothing. Nor does
  an event that leaves the extremities' state groups as they were (a message on one branch
  of a fork): the same states resolve the same.
- The search, push and application-service hooks see accepted events in the timeline;
  rejected events, soft-failed events and outliers are stored and nothing more (a
  soft-failed event keeps its place in the graph and the state at it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veche.core import auth as auth_rules
from veche.core.events import EventFormatError
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from veche.core.state_res import resolve_state, separate
from veche.storage import backfill as backfill_store
from veche.storage import event_graph as graph
from veche.storage import events as store
from veche.storage import search
from veche.storage.database import Txn
from veche.storage.event_graph import EventContext

if TYPE_CHECKING:
    from veche.server import HomeServer

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]


class MissingPrevEvents(Exception):
    """An event's prev_events are not (all) in the room's graph: fetch them first, or
    persist the event as an outlier."""

    def __init__(self, event_ids: Collection[str]) -> None:
        super().__init__(f"unknown prev_events: {sorted(event_ids)}")
        self.event_ids = sorted(event_ids)


@dataclass(slots=True)
class Persisted:
    event: dict[str, Any]
    stream_ordering: int
    rejected: str | None = None
    outlier: bool = False
    soft_failed: bool = False
    # Users whose membership of the room changed with this event (its own key included).
    members_changed: list[str] = field(default_factory=list)


# Entries kept of (state group, auth keys) -> those keys' events in the group's state.
AUTH_IDS_CACHE_SIZE = 10_000


class EventPersister:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        # State groups never change once committed, and each event of a room's run of
        # messages is judged by the same few entries of the same group. Only committed
        # groups are kept: SQLite gives a rolled-back group's ID to the next one. (On
        # PostgreSQL, persist steps of different rooms run in threads at once: plain dict
        # operations only.)
        self._auth_ids: dict[tuple[int, tuple[StateKey, ...]], dict[StateKey, str]] = {}

    # --- contexts ------------------------------------------------------------------------

    def compute_context(
        self, txn: Txn, rv: RoomVersion, event: Mapping[str, Any], *, outlier: bool = False,
        missing_prev_states: Sequence[Mapping[StateKey, str]] = (), soft_fail: bool = True,
    ) -> EventContext:
        """The context of an event not made here: its state before is its one prev event's
        state after, or the resolution of several prev events' states; it is rejected when
        it fails the authorization rules against that state (the spec's check "based on the
        state before the event"), and soft-failed when it passes those but not current
        state. Raises MissingPrevEvents unless every prev event has a place in the graph.

        `missing_prev_states` (federation, services/federation_gaps.py): the states after the
        prev events that are not here, as another server told them; the prev events that
        are here are resolved with them. `soft_fail=False` (backfill): an old event is not
        judged by current state, which came after it."""
        if outlier:
            return EventContext(outlier=True)
        prev_ids = [p for p in dict.fromkeys(event.get("prev_events") or ()) if isinstance(p, str)]
        # The room's extremities, read anyway to know whether the event builds on current
        # state, tell the groups of prev events that are among them (the common case).
        extremities = {e: g for e, _, g in graph.get_forward_extremities(txn, event["room_id"])}
        on_top = bool(prev_ids) and set(prev_ids) == extremities.keys()
        if all(extremities.get(p) is not None for p in prev_ids):
            after = {p: int(extremities[p]) for p in prev_ids}  # type: ignore[arg-type]
        else:
            after = graph.get_state_groups_after(txn, prev_ids)
        missing = [p for p in prev_ids if p not in after]
        if missing and not missing_prev_states:
            raise MissingPrevEvents(missing)
        groups = list(dict.fromkeys(after[p] for p in prev_ids if p in after))
        group: int | None = groups[0] if groups else None
        if len(groups) > 1 or missing_prev_states:
            states = [graph.get_state_group_ids(txn, g) for g in groups]
            states += [dict(s) for s in missing_prev_states]
            resolved = self.resolve(txn, rv, states)
            if groups:
                # The delta base: the prev state the resolution moved least.
                best = min(range(len(groups)), key=lambda i: _distance(states[i], resolved))
                group = graph.store_state_group(
                    txn, event["room_id"], None, resolved, groups[best], states[best])
            else:
                group = graph.store_state_group(txn, event["room_id"], None, resolved, None)
        # A group the resolution above made is this transaction's; the others are committed
        # or made by events of this batch before it, committed with it.
        rejected, auth_state = self._auth_failure(
            txn, rv, event, group, committed=len(groups) <= 1 and not missing_prev_states)
        # On top of every extremity, the state before the event is current state, which
        # then has allowed it already.
        soft_failed = (soft_fail and rejected is None and not on_top
                       and self._fails_current_state(txn, rv, event))
        return EventContext(group, rejected=rejected, soft_failed=soft_failed,
                            extremities=tuple(extremities), auth_state=auth_state)

    def _remember_auth_ids(self, key: tuple[int, tuple[StateKey, ...]],
                           ids: dict[StateKey, str]) -> None:
        if len(self._auth_ids) >= AUTH_IDS_CACHE_SIZE:
            self._auth_ids.clear()
        self._auth_ids[key] = ids

    def _fails_current_state(self, txn: Txn, rv: RoomVersion, event: Mapping[str, Any]) -> bool:
        """Server-server API "Soft failure": would current state refuse the event?"""
        keys = {*auth_rules.auth_types_for_event(rv, event), auth_rules.CREATE_KEY}
        ids = store.get_current_state_ids(txn, event["room_id"], keys)
        events = store.get_events(txn, list(ids.values()))
        try:
            auth_rules.check_auth_rules(rv, event, {k: events[e] for k, e in ids.items() if e in events})
        except (auth_rules.AuthError, EventFormatError):
            return True
        return False

    def _auth_failure(
        self, txn: Txn, rv: RoomVersion, event: Mapping[str, Any], group: int | None,
        committed: bool = False,
    ) -> tuple[str | None, dict[StateKey, dict[str, Any]]]:
        """(why the state before the event refuses it or None, the auth state read).
        `committed`: `group` is one that exists once this transaction commits, whatever
        becomes of the event (see __init__)."""
        keys = tuple(sorted({*auth_rules.auth_types_for_event(rv, event), auth_rules.CREATE_KEY}))
        ids: dict[StateKey, str] = {}
        if group is not None:
            cache_key = (group, keys)
            cached = self._auth_ids.get(cache_key)
            if cached is None:
                ids = graph.get_state_group_ids(txn, group, keys)
                if committed:
                    txn.call_after(lambda: self._remember_auth_ids(cache_key, ids))
            else:
                ids = cached
        # Parsed once for all the events they authorise (and forgotten when redacted).
        events = self.hs.events.state_events(txn, list(ids.values()))
        auth_state = {k: events[e] for k, e in ids.items() if e in events}
        try:
            auth_rules.check_auth_rules(rv, event, auth_state)
        except (auth_rules.AuthError, EventFormatError) as e:
            return str(e) or "not allowed by the state before the event", auth_state
        return None, auth_state

    def resolve(self, txn: Txn, rv: RoomVersion, states: Sequence[Mapping[StateKey, str]]) -> StateMap:
        """State resolution over stored state sets."""
        if not states:
            return {}
        _, conflicted = separate(states)
        if not conflicted:
            return dict(states[0])
        stored = graph.StoredEventGraph(txn)
        difference = graph.get_auth_chain_difference(txn, states)
        stored.preload(conflicted | difference)
        # Computed once for the preload; the resolver asks for it once, for these sets.
        return resolve_state(rv, states, stored, auth_difference=lambda _sets: difference)

    # --- persisting ----------------------------------------------------------------------

    def persist_event(
        self, txn: Txn, event: dict[str, Any], context: EventContext, pos: int, *,
        rv: RoomVersion | None = None, txn_key: tuple[str, str, str, str] | None = None,
        auth_state: dict[StateKey, dict[str, Any]] | None = None, backfilled: bool = False,
    ) -> Persisted:
        """Store the event, move current state and run the hooks, in the caller's transaction.

        `auth_state`: the state after the event as far as the caller knows it (the power
        levels and create events at least), which spares the push hook reading them.
        `backfilled`: an old event from another server's history, placed before what is
        here (services/backfill.py).
        """
        room_id = event["room_id"]
        accepted = not context.outlier and context.rejected is None and not context.soft_failed
        prev_ids = {p for p in event.get("prev_events") or () if isinstance(p, str)}
        on_top = context.extremities is not None and set(context.extremities) == prev_ids
        if backfilled and accepted:
            # Older than what is here: it is no forward extremity (those of a backfilled
            # batch stored before their children would be, for a moment), so it moves no
            # current state; it is searchable, notifies nobody and is not sent on.
            store.store_event(txn, event, pos, context, txn_key)
            backfill_store.not_an_extremity(txn, room_id, event["event_id"])
            search.index_event(txn, event, pos)
            return Persisted(event, pos)
        groups_before = None if on_top or not accepted else _extremity_groups(txn, room_id)
        store.store_event(txn, event, pos, context, txn_key)
        if not accepted:
            return Persisted(event, pos, context.rejected, context.outlier,
                             soft_failed=context.soft_failed)
        if rv is None:
            rv = KNOWN_ROOM_VERSIONS[str(store.get_room_version(txn, room_id))]
        if groups_before is None:
            # On top of current state: the event's own key is all that moves.
            state_key = event.get("state_key")
            changed = {(event["type"], state_key): event} if isinstance(state_key, str) else {}
            removed: list[StateKey] = []
            if auth_state is None and context.auth_state is not None:
                # The state after the event is the one before with its own key.
                auth_state = {**context.auth_state, **changed}
        else:
            changed, removed = self._state_delta(txn, rv, event, groups_before)
        store.write_state_delta(txn, room_id, changed, removed, pos)
        if changed or removed:  # a message can move state too (a fork's resolution)
            self.hs.stream.not_timeline(pos)
        members = [sk for t, sk in (*changed, *removed) if t == "m.room.member"]
        own = (event["type"], event.get("state_key"))
        if any(k != own for k in (*changed, *removed) if k[0] == "m.room.member"):
            # The push hook caches members and forgets them only for the event's own key.
            self.hs.push.forget_room(room_id)
            txn.call_after(lambda: self.hs.push.forget_room(room_id))
        self._run_hooks(txn, rv, event, pos, auth_state)
        if self.hs.config.federation.enabled:
            # Federation hook: a local event is queued (durably, in this transaction) for
            # the room's other servers; services/federation_sender.py.
            self.hs.federation_sender.queue_event_txn(txn, event, members)
        return Persisted(event, pos, members_changed=members)

    def _state_delta(
        self, txn: Txn, rv: RoomVersion, event: dict[str, Any], groups_before: list[int],
    ) -> tuple[dict[StateKey, dict[str, Any]], list[StateKey]]:
        """(keys -> their new events, keys removed) taking current state, the state of the
        extremities' groups before the event, to that of the extremities now."""
        room_id = event["room_id"]
        groups = _extremity_groups(txn, room_id)
        if set(groups) == set(groups_before):
            # The same states (a message on one branch of a fork): the same resolution.
            return {}, []
        if len(groups) == 1:
            new = graph.get_state_group_ids(txn, groups[0])
        else:
            new = self.resolve(txn, rv, [graph.get_state_group_ids(txn, g) for g in groups])
        old = store.get_current_state_ids(txn, room_id)
        moved = {k: e for k, e in new.items() if old.get(k) != e}
        events = store.get_events(txn, [e for e in moved.values() if e != event["event_id"]])
        events[event["event_id"]] = event
        return {k: events[e] for k, e in moved.items()}, [k for k in old if k not in new]

    def _run_hooks(
        self, txn: Txn, rv: RoomVersion, event: dict[str, Any], pos: int,
        auth_state: dict[StateKey, dict[str, Any]] | None,
    ) -> None:
        search.index_event(txn, event, pos)
        members = self.hs.push.on_event_persisted(txn, event, pos, rv, auth_state)
        if self.hs.config.app_service_config_files:
            self.hs.appservices.on_event_persisted(txn, event, members)


def _extremity_groups(txn: Txn, room_id: str) -> list[int]:
    """The state groups after the room's forward extremities, deepest first."""
    return list(dict.fromkeys(
        g for _, _, g in graph.get_forward_extremities(txn, room_id) if g is not None))


def _distance(state: Mapping[StateKey, str], target: Mapping[StateKey, str]) -> tuple[bool, int]:
    """How far a delta from `state` to `target` is: a key `target` lacks forces a snapshot."""
    return bool(state.keys() - target.keys()), sum(1 for k, v in target.items() if state.get(k) != v)
