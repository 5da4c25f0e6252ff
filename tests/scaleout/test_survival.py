"""Issue 15, done-when 3: `kill -9` of one process under load.

Senders go through HAProxy, retrying a failed send with the same transaction ID as clients
do. No send acknowledged with 200 is lost; the senders and a syncing matrix-nio client go on
through the other processes; the background work the dead process held is taken over within
10 s, and the others stop waiting for its stream positions.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import Counter
from datetime import datetime
from urllib.parse import quote

import aiohttp
import pytest
from nio import AsyncClient, AsyncClientConfig, SyncResponse

from tests.conftest import Client
from tests.scaleout.conftest import Cluster, Recorder, Worker, client_on, send

SENDERS = 4
LOAD_BEFORE_S = 3.0
LOAD_AFTER_S = 6.0
TAKEOVER_BUDGET_S = 10.0
# Enough for every message of the test in one response: a gap (limited) is not what is tested.
SYNC_FILTER = {"room": {"timeline": {"limit": 2000}}, "presence": {"types": []}}


class Sender:
    def __init__(self, client: Client, room_id: str) -> None:
        self.client, self.room_id = client, room_id
        self.acked: list[tuple[float, str, str]] = []  # (when, event_id, body)
        self.failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            body = f"{self.client.user_id} {i}"
            txn = secrets.token_hex(8)
            while True:  # a client's retry: the same transaction ID, so never two events
                try:
                    status, resp = await self.client.put(
                        f"rooms/{quote(self.room_id)}/send/m.room.message/{txn}",
                        {"msgtype": "m.text", "body": body})
                except (aiohttp.ClientError, OSError):
                    status, resp = 0, None
                if status == 200:
                    self.acked.append((time.monotonic(), resp["event_id"], body))
                    break
                self.failures += 1
                await asyncio.sleep(0.2)
            i += 1


def _lease_times(worker: Worker, lease: str) -> list[float]:
    """When (epoch seconds) the worker's log says it took `lease`."""
    out = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if f"holds lease {lease}" in line:
            stamp = re.match(r"(\S+ \S+),(\d+)", line)
            if stamp:
                when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
                out.append(when + int(stamp.group(2)) / 1000)
    return out


async def _room_served_by(worker: Worker, cluster: Cluster, recorder: Recorder,
                          owner: Client) -> str:
    """A new room whose events the balancer sends to `worker`: the process that persists an
    event owes the application service its transaction, which the outbox names while the
    service does not answer."""
    import psycopg

    for _ in range(20):
        status, body = await owner.post("createRoom", {"preset": "public_chat"})
        assert status == 200, body
        room_id = body["room_id"]
        recorder.answering.clear()
        try:
            event_id = await send(owner, room_id, "which process?")
            with psycopg.connect(cluster.pg.url) as conn:
                row = conn.execute("SELECT owner FROM cluster_outbox WHERE event_id = %s",
                                   (event_id,)).fetchone()
        finally:
            recorder.answering.set()
        assert row is not None, "the outbox does not name the process that sent the event"
        if row[0] == worker.name:
            return room_id
    raise AssertionError(f"no room of 20 was sent to {worker.name}")


async def _history(c: Client, room_id: str) -> dict[str, str | None]:
    """Every event's body in the room's history, paginated back to the start as a client
    does: a fast run sends more than one page's worth."""
    stored: dict[str, str | None] = {}
    params = {"dir": "b", "limit": "1000"}
    while True:
        status, page = await c.get(f"rooms/{quote(room_id)}/messages", params=params)
        assert status == 200, page
        stored.update((e["event_id"], e["content"].get("body")) for e in page["chunk"])
        if "end" not in page:
            return stored
        params = {**params, "from": page["end"]}


async def test_kill_9_under_load_loses_no_acknowledged_message(
        recorder: Recorder, cluster: Cluster, http: aiohttp.ClientSession) -> None:
    # The process holding the background work is the one to die, and it is the one the
    # balancer sends the room's events to, so the senders lose the process they talk to.
    holders = [w for w in cluster.workers if _lease_times(w, "media-expiry")]
    assert len(holders) == 1, [w.name for w in holders]
    victim = holders[0]
    survivors = [w for w in cluster.workers if w is not victim]
    owner = await Client(http, cluster.base_url).register()
    room_id = await _room_served_by(victim, cluster, recorder, owner)
    users = [await Client(http, cluster.base_url).register() for _ in range(SENDERS)]
    for u in users:
        assert (await u.post(f"join/{quote(room_id)}", {}))[0] == 200

    # A nio client syncing through the balancer, wherever it is sent.
    reader = AsyncClient(cluster.base_url, owner.user_id or "", config=AsyncClientConfig(
        encryption_enabled=False, store_sync_tokens=False, request_timeout=30, max_timeouts=None))
    reader.restore_login(owner.user_id or "", owner.device_id or "", owner.access_token or "")
    first = await reader.sync(timeout=0)
    assert isinstance(first, SyncResponse)
    seen: list[tuple[float, str]] = []
    gaps: list[int] = []
    stop, stop_reading = asyncio.Event(), asyncio.Event()

    async def read() -> None:
        while not stop_reading.is_set():
            resp = await reader.sync(timeout=2000, sync_filter=SYNC_FILTER)
            if isinstance(resp, SyncResponse) and room_id in resp.rooms.join:
                timeline = resp.rooms.join[room_id].timeline
                if timeline.limited:
                    gaps.append(len(timeline.events))
                seen.extend((time.monotonic(), e.event_id) for e in timeline.events)

    # And a client talking to the victim itself, which moves to a survivor when it dies,
    # taking its sync token along.
    hopped: list[str] = []

    async def hop_read() -> None:
        c = client_on(http, victim.base_url, users[0])
        status, body = await c.get("sync", params={"timeout": "0"})
        assert status == 200
        since = body["next_batch"]
        while not stop_reading.is_set():
            try:
                status, body = await c.get("sync", params={
                    "since": since, "timeout": "2000", "filter": json.dumps(SYNC_FILTER)})
            except (aiohttp.ClientError, OSError):
                c = client_on(http, survivors[0].base_url, users[0])
                continue
            assert status == 200, body
            room = body.get("rooms", {}).get("join", {}).get(room_id, {})
            assert not room.get("timeline", {}).get("limited"), "a gap"
            hopped.extend(e["event_id"] for e in room.get("timeline", {}).get("events", []))
            since = body["next_batch"]

    hopping = asyncio.ensure_future(hop_read())
    senders = [Sender(u, room_id) for u in users]
    tasks = [asyncio.ensure_future(s.run(stop)) for s in senders]
    reading = asyncio.ensure_future(read())
    await asyncio.sleep(LOAD_BEFORE_S)
    killed_at_wall, killed_at = time.time(), time.monotonic()
    victim.kill9()
    await asyncio.sleep(LOAD_AFTER_S)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    last_acked = max(t for s in senders for t, _, _ in s.acked)

    # Every acknowledged send is in the room, as every survivor serves it.
    acked = {eid: body for s in senders for _, eid, body in s.acked}
    for w in survivors:
        stored = await _history(client_on(http, w.base_url, owner), room_id)
        lost = {eid: b for eid, b in acked.items() if stored.get(eid) != b}
        assert not lost, f"{len(lost)} acknowledged message(s) missing on {w.name}: {lost}"

    # The senders went on through the other processes.
    for s in senders:
        after = [t for t, _, _ in s.acked if t > killed_at + 1]
        assert after, f"{s.client.user_id} sent nothing after the kill ({s.failures} failures)"

    # The syncing client saw the messages sent after the kill, within seconds.
    deadline = time.monotonic() + 15
    while not set(acked) <= {eid for _, eid in seen} and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    while not set(acked) <= set(hopped) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    stop_reading.set()
    await asyncio.wait_for(reading, 30)
    await asyncio.wait_for(hopping, 30)
    missed = set(acked) - set(hopped)
    acked_at = {eid: t for s in senders for t, eid, _ in s.acked}
    assert not missed, (
        f"the client that moved to a survivor missed {len(missed)} of {len(acked)} messages,"
        f" acknowledged {sorted(round(acked_at[e] - killed_at, 2) for e in missed)} s after"
        f" the kill; it saw {len(hopped)}\n" + cluster.logs())
    twice = [eid for eid, n in Counter(hopped).items() if n > 1]
    assert not twice, f"the client that moved to a survivor got {len(twice)} event(s) twice"
    await reader.close()
    missing = set(acked) - {eid for _, eid in seen}
    assert not missing, (f"the syncing client never saw {len(missing)} of {len(acked)}"
                         f" message(s); limited timelines: {gaps}")
    # Its sync token, handed out by one process, is taken as it is by another.
    repeated = [eid for eid, n in Counter(eid for _, eid in seen).items() if n > 1]
    assert not repeated, f"the syncing client got {len(repeated)} event(s) twice"
    print(f"{len(acked)} messages acknowledged, {sum(s.failures for s in senders)} retries;"
          f" last ack {last_acked - killed_at:.1f} s after the kill")

    # Another process holds the dead one's background work within 10 s.
    taken = [t for w in survivors for t in _lease_times(w, "media-expiry") if t > killed_at_wall]
    assert taken, "no other process took over the media-expiry lease:\n" + cluster.logs()
    took = min(taken) - killed_at_wall
    print(f"media expiry taken over {took:.1f} s after the kill")
    assert took < TAKEOVER_BUDGET_S


async def test_pushes_and_transactions_owed_by_a_dead_process_go_out_from_another(
        recorder: Recorder, cluster: Cluster, http: aiohttp.ClientSession) -> None:
    live = [w for w in cluster.workers if w.proc is not None]
    assert len(live) >= 2
    victim, survivor = live[0], live[1]
    alice = await Client(http, survivor.base_url).register()
    bob = await Client(http, survivor.base_url).register()
    status, body = await alice.post("createRoom", {"preset": "private_chat", "invite": [bob.user_id]})
    assert status == 200, body
    room_id = body["room_id"]
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    status, body = await bob.post("pushers/set", {
        "kind": "http", "app_id": "org.example.app", "pushkey": "bob-phone",
        "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
        "data": {"url": recorder.url + "/_matrix/push/v1/notify"}})
    assert status == 200, body
    await asyncio.sleep(0.2)

    # The gateway and the application service take the requests and never answer: the
    # victim dies owing them.
    recorder.answering.clear()
    on_victim = client_on(http, victim.base_url, alice)
    sent = [await send(on_victim, room_id, f"owed {i}") for i in range(5)]
    await asyncio.sleep(1)
    killed_at = time.monotonic()
    victim.kill9()
    await asyncio.sleep(0.3)  # the recorder sees the victim's connections close
    recorder.answering.set()

    deadline = killed_at + TAKEOVER_BUDGET_S
    while time.monotonic() < deadline and not (
            set(sent) <= set(recorder.event_ids("push", room_id))
            and set(sent) <= set(recorder.event_ids("appservice", room_id))):
        await asyncio.sleep(0.1)
    took = time.monotonic() - killed_at
    assert set(sent) <= set(recorder.event_ids("push", room_id)), (
        "pushes owed by the dead process never went out:\n" + cluster.logs())
    assert set(sent) <= set(recorder.event_ids("appservice", room_id)), (
        "application-service events owed by the dead process never went out:\n" + cluster.logs())
    print(f"owed pushes and transactions sent by {survivor.name} {took:.1f} s after the kill")
    await asyncio.sleep(1)
    import psycopg

    with psycopg.connect(cluster.pg.url) as conn:
        left = conn.execute("SELECT kind, owner FROM cluster_outbox WHERE event_id = ANY(%s)",
                            (sent,)).fetchall()
    assert not left, f"sent but still in the outbox: {left}"


pytestmark = pytest.mark.timeout(300)
