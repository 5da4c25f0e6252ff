"""Synapse's state resolution v2 over room graphs read as JSON on stdin.

Runs in Synapse's venv (not Veche's), driven by tests/core/test_state_res_synapse.py:

    stdin:  {"graphs": [{"room_version": "11", "events": [PDU, ...], "rejected": [event ID],
                         "resolutions": [[state set, ...], ...]}]}
            a state set being [[type, state_key, event ID], ...]; each PDU has its event_id.
    stdout: {"graphs": [[{"state": [[type, state_key, event ID], ...]} | {"error": "..."},
                         ...], ...]}

Every event is stored as persisted, so Synapse reads the graph through the store below, which
answers get_auth_chain_difference the way its database does (EventFederationWorkerStore.
_get_auth_chain_difference_txn and its chain cover twin in
synapse/storage/databases/main/event_federation.py): a state set's own events count among
the events its chain reaches, and the v2.1 conflicted subgraph is every event both reachable
from and reaching a conflicted event through auth_events, the conflicted events included.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Collection, Coroutine, Iterable
from typing import Any

import synapse.event_auth  # noqa: F401  (imported before synapse.state: a circular import)
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import EventBase, make_event_from_dict
from synapse.state.v2 import resolve_events_with_store
from synapse.storage.databases.main.event_federation import StateDifference


class Clock:
    async def sleep(self, duration: Any) -> None:
        return None


class Store:
    """An in-memory stand-in for Synapse's StateResolutionStore."""

    def __init__(self, events: dict[str, EventBase]) -> None:
        self.events = events
        self.children: dict[str, set[str]] = {}
        for event in events.values():
            for auth_id in event.auth_event_ids():
                self.children.setdefault(auth_id, set()).add(event.event_id)

    async def get_events(self, event_ids: Collection[str],
                         allow_rejected: bool = False) -> dict[str, EventBase]:
        return {e: self.events[e] for e in event_ids if e in self.events
                and (allow_rejected or self.events[e].rejected_reason is None)}

    def _closure(self, starts: Iterable[str], forwards: bool) -> set[str]:
        """The starts and every event reached from them (forwards: through citing events)."""
        seen: set[str] = set()
        stack = list(starts)
        while stack:
            event_id = stack.pop()
            if event_id in seen:
                continue
            seen.add(event_id)
            if forwards:
                stack.extend(self.children.get(event_id, ()))
            elif event_id in self.events:
                stack.extend(self.events[event_id].auth_event_ids())
        return seen

    async def get_auth_chain_difference(
        self, room_id: str, state_sets: list[set[str]], conflicted_state: set[str] | None,
        additional_backwards_reachable_conflicted_events: set[str] | None,
    ) -> StateDifference:
        chains = [self._closure(s, forwards=False) for s in state_sets]
        difference = set[str]().union(*chains) - chains[0].intersection(*chains[1:])
        subgraph = None
        if conflicted_state is not None:
            backwards = conflicted_state | (additional_backwards_reachable_conflicted_events
                                            or set())
            subgraph = (self._closure(backwards, forwards=False)
                        & self._closure(conflicted_state, forwards=True))
        return StateDifference(auth_difference=difference, conflicted_subgraph=subgraph)


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Nothing here waits on I/O, so the coroutine finishes without suspending."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("state resolution suspended")


def resolve_graph(graph: dict[str, Any]) -> list[dict[str, Any]]:
    room_version = KNOWN_ROOM_VERSIONS[graph["room_version"]]
    rejected = set(graph.get("rejected", ()))
    events: dict[str, EventBase] = {}
    for pdu in graph["events"]:
        event_id = pdu["event_id"]
        fields = {k: v for k, v in pdu.items() if k != "event_id"}
        event = make_event_from_dict(fields, room_version,
                                     rejected_reason="auth" if event_id in rejected else None)
        if event.event_id != event_id:
            raise ValueError(f"Synapse computes ID {event.event_id} for {event_id}")
        events[event_id] = event
    room_id = next(iter(events.values())).room_id  # v12 derives even the create's
    results: list[dict[str, Any]] = []
    for state_sets in graph["resolutions"]:
        sets = [{(t, k): e for t, k, e in state} for state in state_sets]
        try:
            resolved = run(resolve_events_with_store(
                Clock(), room_id, room_version, sets, None, Store(events)))
            results.append({"state": sorted([t, k, e] for (t, k), e in resolved.items())})
        except Exception:
            results.append({"error": traceback.format_exc()})
    return results


def main() -> None:
    request = json.load(sys.stdin)
    answers = []
    for graph in request["graphs"]:
        try:
            answers.append(resolve_graph(graph))
        except Exception:
            answers.append([{"error": traceback.format_exc()}] * len(graph["resolutions"]))
    json.dump({"graphs": answers}, sys.stdout)


if __name__ == "__main__":
    main()
