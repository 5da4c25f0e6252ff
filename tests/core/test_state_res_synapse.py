"""State resolution v2 agrees with Synapse's, the federation peer that must reach the same
state on every fork.

Every resolution the scenarios of test_state_res.py perform, and those of a few hundred random
rooms from its hypothesis strategy, go in one batch to synapse_state_res.py running in
Synapse's venv (SYNAPSE_VENV, else bench/.synapse-venv, installed from PyPI on first use).
Synapse computes v3+ event IDs itself, so each room is first rewritten with reference-hash
event IDs (the "$NAME" IDs become hashes, so ties by event ID may fall the other way than in
the named scenario) and both implementations resolve the rewritten room.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bench.servers import ensure_synapse, synapse_venv
from hypothesis import HealthCheck, Phase, given, settings

from tests.core.test_state_res import (
    SCENARIOS,
    V10,
    V11,
    V12,
    Room,
    StateIds,
    build,
    conflicted_subgraph_case,
    empty_start_case,
    random_rooms,
    rejected_case,
)
from veche.core.events import compute_content_hash, compute_event_id, room_id_from_create_event_id
from veche.core.state_res import resolve_state

pytestmark = pytest.mark.timeout(900)  # the first run installs Synapse
BRIDGE = Path(__file__).with_name("synapse_state_res.py")
RANDOM_ROOMS = 300


class HashedRoom:
    """A Room rewritten with the event IDs Synapse computes, as an EventGraph."""

    def __init__(self, room: Room) -> None:
        self.rv = room.rv
        self.ids: dict[str, str] = {}
        self.events: dict[str, dict[str, Any]] = {}
        room_id = None
        for name_id, event in room.events.items():  # added in causal order
            pdu = {k: v for k, v in event.items() if k != "event_id"}
            pdu["auth_events"] = [self.ids[a] for a in event["auth_events"]]
            pdu["prev_events"] = [self.ids[p] for p in event["prev_events"]]
            if "room_id" in pdu:
                pdu["room_id"] = room_id or pdu["room_id"]
            pdu["hashes"] = {"sha256": compute_content_hash(pdu)}
            pdu["signatures"] = {}
            event_id = compute_event_id(pdu, self.rv)
            if event["type"] == "m.room.create":
                room_id = (room_id_from_create_event_id(event_id)
                           if self.rv.room_id_is_create_event_hash else pdu["room_id"])
            self.ids[name_id] = event_id
            self.events[event_id] = {**pdu, "event_id": event_id}
        self.rejected = {self.ids[e] for e in room.rejected}
        self.names = {v: k for k, v in self.ids.items()}

    def event(self, event_id: str) -> Mapping[str, Any] | None:
        return self.events.get(event_id)

    def is_rejected(self, event_id: str) -> bool:
        return event_id in self.rejected

    def state(self, state: StateIds) -> StateIds:
        return {k: self.ids[v] for k, v in state.items()}

    def named(self, state: Mapping[tuple[str, str], str]) -> dict[tuple[str, str], str]:
        return {k: self.names.get(v, v) for k, v in sorted(state.items())}


@dataclass
class Case:
    label: str
    room: HashedRoom
    resolutions: list[list[StateIds]]  # in hashed IDs


def case(label: str, room: Room, extra: list[list[StateIds]] | None = None) -> Case:
    """The room's own resolutions (state before each event with several prev_events) and
    `extra` ones, in named IDs."""
    hashed = HashedRoom(room)
    resolutions = [[room.state_after[p] for p in e["prev_events"]]
                   for e in room.events.values() if len(e["prev_events"]) > 1]
    resolutions += extra or []
    return Case(label, hashed, [[hashed.state(s) for s in states] for states in resolutions])


def scenario_cases() -> list[Case]:
    cases = [case(f"v{rv.identifier}: {s.name}", build(s, rv))
             for s in SCENARIOS for rv in s.versions]
    for rv in (V10, V11, V12):
        for label, (room, states) in [
            ("first auth checks from an empty state", empty_start_case(rv)),
            ("conflicted state subgraph", conflicted_subgraph_case(rv)),
            ("no rejected event", rejected_case(rv, ())),
            ("rejected auth event", rejected_case(rv, ("JRP",))),
            ("rejected state event", rejected_case(rv, ("ME",))),
        ]:
            cases.append(case(f"v{rv.identifier}: {label}", room, [states]))
        # A state reset that lost the create event: v12 chains still reach it.
        room, states = conflicted_subgraph_case(rv)
        reset = {k: v for k, v in states[1].items() if k != ("m.room.create", "")}
        cases.append(case(f"v{rv.identifier}: state reset losing the create event", room,
                          [[states[0], reset], [reset, room.state_after["$START"]]]))
    return cases


def random_cases() -> list[Case]:
    rooms: list[tuple[Room, list[StateIds]]] = []

    @settings(max_examples=RANDOM_ROOMS, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(random_rooms())
    def collect(room_states: tuple[Room, list[StateIds]]) -> None:
        rooms.append(room_states)

    collect()
    return [case(f"random room {i}", room, [states]) for i, (room, states) in enumerate(rooms)]


def synapse_resolutions(cases: list[Case]) -> list[list[dict[str, Any]]]:
    python = ensure_synapse(synapse_venv())
    request = {"graphs": [{
        "room_version": c.room.rv.identifier,
        "events": list(c.room.events.values()),
        "rejected": sorted(c.room.rejected),
        "resolutions": [[sorted([t, k, e] for (t, k), e in s.items()) for s in states]
                        for states in c.resolutions],
    } for c in cases]}
    started = time.monotonic()
    done = subprocess.run([str(python), str(BRIDGE)], input=json.dumps(request),
                          capture_output=True, text=True, check=True)
    print(f"Synapse resolved {sum(len(c.resolutions) for c in cases)} state sets of "
          f"{len(cases)} rooms in {time.monotonic() - started:.1f}s", file=sys.stderr)
    answers: list[list[dict[str, Any]]] = json.loads(done.stdout)["graphs"]
    return answers


@dataclass
class Outcome:
    case: Case
    disagreements: list[str]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    cases = scenario_cases() + random_cases()
    result = {}
    for c, answers in zip(cases, synapse_resolutions(cases), strict=True):
        disagreements = []
        for states, answer in zip(c.resolutions, answers, strict=True):
            ours = resolve_state(c.room.rv, states, c.room)
            if "error" in answer:
                disagreements.append(f"Synapse failed: {answer['error']}")
                continue
            theirs = {(t, k): e for t, k, e in answer["state"]}
            if ours != theirs:
                differing = {k: (ours.get(k), theirs.get(k))
                             for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)}
                disagreements.append(
                    "(ours, Synapse's) " + repr({k: tuple(c.room.names.get(e, e) if e else e
                                                          for e in pair)
                                                 for k, pair in sorted(differing.items())})
                    + " resolving " + repr([c.room.named(s) for s in states]))
        result[c.label] = Outcome(c, disagreements)
    return result


@pytest.mark.parametrize("label", [c.label for c in scenario_cases()])
def test_scenario_agrees_with_synapse(outcomes: dict[str, Outcome], label: str) -> None:
    assert outcomes[label].case.resolutions
    assert outcomes[label].disagreements == []


def test_random_rooms_agree_with_synapse(outcomes: dict[str, Outcome]) -> None:
    randoms = [o for label, o in outcomes.items() if label.startswith("random room")]
    assert len(randoms) >= RANDOM_ROOMS // 2  # hypothesis may stop early on duplicates
    failing = [o for o in randoms if o.disagreements]
    resolutions = sum(len(o.case.resolutions) for o in randoms)
    print(f"{len(randoms) - len(failing)} of {len(randoms)} random rooms "
          f"({resolutions} resolutions) agree with Synapse", file=sys.stderr)
    assert not failing, "\n".join(
        f"{o.case.label}: {d}\n  events: {describe(o.case.room)}"
        for o in failing[:3] for d in o.disagreements[:1])


def describe(room: HashedRoom) -> str:
    return "; ".join(
        f"{room.names[e['event_id']]} {e['type']} {e.get('state_key')} by {e['sender']} "
        f"{e['content']} auth={[room.names[a] for a in e['auth_events']]}"
        f"{' REJECTED' if e['event_id'] in room.rejected else ''}"
        for e in room.events.values())
