"""State resolution v2 ("Room version 2" onwards) and its room version 12 revision.

`resolve_state` is pure: it reads events through an EventGraph the caller supplies (the
storage layer preloads or fetches them) and returns the resolved state map. The steps and
orderings are those of content/rooms/fragments/v2-state-res.md; room versions with the
`state_res_conflicted_subgraph` flag (v12) add the conflicted state subgraph to the full
conflicted set and start the first iterative auth checks from an empty state.

Servers must agree on the outcome of every fork, so where the spec's text and Synapse
(synapse/state/v2.py, checked by tests/core/test_state_res_synapse.py) differ, this follows
Synapse:
- Auth difference. Spec: the union minus the intersection of the full auth chains, a
  state's being its events' auth chains, which leave the events themselves out. Synapse
  (EventFederationWorkerStore.get_auth_chain_difference) counts a state's own events among
  those it reaches; so do we.
- Step 1. Spec: add to each power event the events of its whole auth chain that are in the
  full conflicted set, and sort by the auth chain. Synapse follows auth_events from a power
  event only through events in the full conflicted set (`_add_event_and_auth_chain_to_graph`)
  and sorts by those edges alone; so do we.
- Power events. Spec: any m.room.power_levels or m.room.join_rules state event. Synapse
  (`_is_power_event`): only those with an empty state_key, and also m.room.create; so do we.
- Rejected events. Spec: an event rejected against the state at it is authorised afresh
  like any other. Synapse (`_iterative_auth_checks`, synapse#13797) never admits an event
  it rejected, nor uses one from the partial state as an auth event; so do we.
- v12 (the spec says only that the room ID implies the create event): it counts as an auth
  event of every other event, as in Synapse's `auth_event_ids()`, also in auth chains.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from veche.core.auth import (
    POWER_LEVELS_KEY,
    AuthError,
    StateKey,
    auth_types_for_event,
    check_auth_rules,
    get_user_power_level,
)
from veche.core.events import EventFormatError, create_event_id_from_room_id
from veche.core.room_versions import RoomVersion

Event = Mapping[str, Any]
StateIds = Mapping[StateKey, str]
# event_id -> the IDs of its auth chain (the event itself excluded).
AuthChainLookup = Callable[[str], Collection[str]]
# The state sets -> their auth difference: union minus intersection of their full auth chains,
# a state's own events counted in its chain (as Synapse's database counts them).
AuthDifferenceLookup = Callable[[Sequence[StateIds]], Collection[str]]


class EventGraph(Protocol):
    def event(self, event_id: str) -> Event | None:
        """The PDU, with its `event_id`, or None if this server does not have it."""
        ...

    def is_rejected(self, event_id: str) -> bool:
        """Whether the event was rejected when it was received."""
        ...


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[StateIds],
    graph: EventGraph,
    auth_chain: AuthChainLookup | None = None,
    auth_difference: AuthDifferenceLookup | None = None,
) -> dict[StateKey, str]:
    """The resolution of `state_sets`, each a map (type, state_key) -> event ID.

    `auth_chain` and `auth_difference` may answer faster than walking `auth_events` through
    `graph` (a storage index, say).
    Events the graph does not know take no part in the conflict (they cannot be authorised)
    but pass through when unconflicted.
    """
    return _Resolver(room_version, graph, auth_chain, auth_difference).resolve(state_sets)


def is_power_event(event: Event) -> bool:
    """"Power events" might remove someone's ability to do something in the room."""
    state_key = event.get("state_key")
    if not isinstance(state_key, str):
        return False
    event_type = event.get("type")
    if event_type in ("m.room.power_levels", "m.room.join_rules", "m.room.create"):
        return state_key == ""
    content = event.get("content")
    membership = content.get("membership") if isinstance(content, Mapping) else None
    return (event_type == "m.room.member" and membership in ("leave", "ban")
            and event.get("sender") != event.get("state_key"))


def separate(state_sets: Sequence[StateIds]) -> tuple[dict[StateKey, str], set[str]]:
    """The unconflicted state map and the conflicted state set.

    A key missing from some state set is conflicted even if the others agree.
    """
    unconflicted: dict[StateKey, str] = {}
    conflicted: set[str] = set()
    for key in {k for state in state_sets for k in state}:
        values = {state.get(key) for state in state_sets}
        present = {v for v in values if v is not None}
        if len(values) == 1 and present:
            unconflicted[key] = present.pop()
        else:
            conflicted |= present
    return unconflicted, conflicted


def _state_key_of(event: Event) -> StateKey | None:
    state_key = event.get("state_key")
    return (str(event.get("type")), state_key) if isinstance(state_key, str) else None


def _ts(event: Event) -> int:
    ts = event.get("origin_server_ts")
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else 0


class _Resolver:
    def __init__(self, rv: RoomVersion, graph: EventGraph,
                 auth_chain: AuthChainLookup | None,
                 auth_difference: AuthDifferenceLookup | None) -> None:
        self.rv = rv
        self.graph = graph
        self.auth_chain_lookup = auth_chain
        self.auth_difference_lookup = auth_difference
        self.events: dict[str, Event | None] = {}
        self.chains: dict[str, frozenset[str]] = {}
        self.pl_parents: dict[str, str | None] = {}

    def resolve(self, state_sets: Sequence[StateIds]) -> dict[StateKey, str]:
        unconflicted, conflicted = separate(state_sets)
        if not conflicted:
            return unconflicted
        full = conflicted | self._auth_difference(state_sets)
        if self.rv.state_res_conflicted_subgraph:
            full |= self._conflicted_subgraph(conflicted)
        full = {e for e in full if self._state_event(e) is not None}

        power_order = self._reverse_topological_power_order(
            {e for e in full if is_power_event(self._known(e))}, full)
        picked = set(power_order)
        base = {} if self.rv.state_res_conflicted_subgraph else unconflicted
        partial = self._iterative_auth_checks(power_order, base)

        leftover = self._mainline_order(full - picked, partial.get(POWER_LEVELS_KEY))
        resolved = self._iterative_auth_checks(leftover, partial)
        resolved.update(unconflicted)
        return resolved

    # --- graph access ------------------------------------------------------------------

    def _get(self, event_id: str) -> Event | None:
        if event_id not in self.events:
            self.events[event_id] = self.graph.event(event_id)
        return self.events[event_id]

    def _known(self, event_id: str) -> Event:
        event = self._get(event_id)
        assert event is not None
        return event

    def _state_event(self, event_id: str) -> Event | None:
        event = self._get(event_id)
        return event if event is not None and _state_key_of(event) is not None else None

    def _auth_ids(self, event_id: str) -> list[str]:
        event = self._get(event_id)
        if event is None:
            return []
        auth_events = event.get("auth_events")
        ids = ([a for a in auth_events if isinstance(a, str)]
               if isinstance(auth_events, list) else [])
        return ids + self._implicit_create(event)

    def _implicit_create(self, event: Event) -> list[str]:
        """v12 selects no create event into auth_events: the room ID names it."""
        if self.rv.room_id_is_create_event_hash and event.get("type") != "m.room.create":
            try:
                return [create_event_id_from_room_id(str(event.get("room_id")))]
            except EventFormatError:
                pass
        return []

    def _walk(self, starts: Iterable[str]) -> set[str]:
        """Every event reachable from `starts` through one or more auth_events links."""
        seen: set[str] = set()
        stack = [a for s in starts for a in self._auth_ids(s)]
        while stack:
            event_id = stack.pop()
            if event_id not in seen:
                seen.add(event_id)
                stack.extend(self._auth_ids(event_id))
        return seen

    def _chain(self, event_id: str) -> frozenset[str]:
        if event_id not in self.chains:
            lookup = self.auth_chain_lookup
            if lookup is None:
                self.chains[event_id] = frozenset(self._walk([event_id]))
            else:
                event = self._get(event_id)
                implicit = self._implicit_create(event) if event is not None else []
                self.chains[event_id] = frozenset(lookup(event_id)).union(implicit)
        return self.chains[event_id]

    def _pl_parent(self, event_id: str) -> str | None:
        """The m.room.power_levels event among the event's auth_events, if any."""
        if event_id not in self.pl_parents:
            self.pl_parents[event_id] = next(
                (a for a in self._auth_ids(event_id)
                 if (e := self._get(a)) is not None and _state_key_of(e) == POWER_LEVELS_KEY),
                None)
        return self.pl_parents[event_id]

    # --- the full conflicted set --------------------------------------------------------

    def _full_auth_chain(self, state: StateIds) -> set[str]:
        # The state's own events count as reached, as Synapse counts them: two servers must
        # agree on every fork's outcome, and the spec's wording leaves them out.
        if self.auth_chain_lookup is None:
            return self._walk(state.values()) | set(state.values())
        return set(state.values()).union(*(self._chain(e) for e in state.values()))

    def _auth_difference(self, state_sets: Sequence[StateIds]) -> set[str]:
        if self.auth_difference_lookup is not None:
            return set(self.auth_difference_lookup(state_sets))
        chains = [self._full_auth_chain(state) for state in state_sets]
        return set[str]().union(*chains) - chains[0].intersection(*chains[1:])

    def _conflicted_subgraph(self, conflicted: set[str]) -> set[str]:
        """Events on an auth_events path from one conflicted event to another, ends included."""
        below = self._walk(conflicted)
        return conflicted | (below & self._reaching(below, conflicted))

    def _reaching(self, events: Iterable[str], targets: set[str]) -> set[str]:
        """Those of `events` from which a target is reachable (a target reaches itself)."""
        reaches: dict[str, bool] = {}
        visiting: set[str] = set()
        for root in events:
            stack = [(root, False)]
            while stack:
                event_id, expanded = stack.pop()
                if event_id in reaches:
                    continue
                parents = self._auth_ids(event_id)
                if expanded:
                    visiting.discard(event_id)
                    reaches[event_id] = event_id in targets or any(
                        reaches.get(p, False) for p in parents)
                elif event_id not in visiting:  # a cycle is malformed; do not loop on it
                    visiting.add(event_id)
                    stack.append((event_id, True))
                    stack.extend((p, False) for p in parents if p not in reaches)
        return {e for e, r in reaches.items() if r}

    # --- orderings ----------------------------------------------------------------------

    def _sender_power(self, event_id: str) -> int | float:
        """The sender's power level "when looking at" the event's auth_events."""
        event = self._known(event_id)
        auth_state: dict[StateKey, Event] = {}
        for auth_id in self._auth_ids(event_id):
            auth_event = self._get(auth_id)
            key = _state_key_of(auth_event) if auth_event is not None else None
            if auth_event is not None and key is not None:
                auth_state[key] = auth_event
        return get_user_power_level(str(event.get("sender", "")), auth_state, self.rv)

    def _reverse_topological_power_order(self, power: set[str], full: set[str]) -> list[str]:
        """The power events and the events of `full` their auth_events reach through `full`,
        by Kahn's algorithm on those auth_events links taking, among the ready events, the
        smallest by (greater sender power, smaller origin_server_ts, smaller event_id)."""
        ancestors: dict[str, set[str]] = {}
        stack = list(power)
        while stack:
            event_id = stack.pop()
            if event_id not in ancestors:
                ancestors[event_id] = {a for a in self._auth_ids(event_id) if a in full}
                stack.extend(ancestors[event_id])
        children: dict[str, list[str]] = defaultdict(list)
        for event_id, parents in ancestors.items():
            for parent in parents:
                children[parent].append(event_id)
        waiting = {e: len(parents) for e, parents in ancestors.items()}

        def entry(event_id: str) -> tuple[int | float, int, str]:
            return (-self._sender_power(event_id), _ts(self._known(event_id)), event_id)

        ready = [entry(e) for e, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            event_id = heapq.heappop(ready)[2]
            order.append(event_id)
            for child in children[event_id]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, entry(child))
        return order

    def _mainline_order(self, events: Iterable[str], power_levels_id: str | None) -> list[str]:
        """Greater mainline position first, then origin_server_ts, then event_id."""
        mainline: dict[str, float] = {}
        position = 0
        while power_levels_id is not None and power_levels_id not in mainline:
            mainline[power_levels_id] = position
            position += 1
            power_levels_id = self._pl_parent(power_levels_id)

        # The position found from a power levels event, itself included, for events
        # sharing power levels ancestry.
        found_from: dict[str, float] = {}

        def mainline_position(event_id: str) -> float:
            # e_0 itself is not compared, only e_1, e_2, ... from its auth_events.
            path: list[str] = []
            pl = self._pl_parent(event_id)
            found = float("inf")
            while pl is not None and pl not in path:
                if pl in mainline or pl in found_from:
                    found = mainline[pl] if pl in mainline else found_from[pl]
                    break
                path.append(pl)
                pl = self._pl_parent(pl)
            found_from.update(dict.fromkeys(path, found))
            return found

        return sorted(events, key=lambda e: (-mainline_position(e), _ts(self._known(e)), e))

    # --- iterative auth checks ----------------------------------------------------------

    def _iterative_auth_checks(
        self, event_ids: Iterable[str], base: Mapping[StateKey, str]
    ) -> dict[StateKey, str]:
        state = dict(base)
        for event_id in event_ids:
            if self.graph.is_rejected(event_id):
                continue
            event = self._known(event_id)
            key = _state_key_of(event)
            assert key is not None
            auth_state: dict[StateKey, Event] = {}
            # The event's own auth events fill what the state lacks; rejected ones never
            # count since auth events are not re-authorised here.
            for auth_id in self._auth_ids(event_id):
                auth_event = self._state_event(auth_id)
                if auth_event is not None and not self.graph.is_rejected(auth_id):
                    auth_state[(str(auth_event["type"]), str(auth_event["state_key"]))] = \
                        auth_event
            for needed in auth_types_for_event(self.rv, event):
                state_id = state.get(needed)
                state_event = self._get(state_id) if state_id is not None else None
                if state_event is not None and not self.graph.is_rejected(str(state_id)):
                    auth_state[needed] = state_event
            try:
                check_auth_rules(self.rv, event, auth_state)
            except (AuthError, EventFormatError):
                continue
            state[key] = event_id
        return state
