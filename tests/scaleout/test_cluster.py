"""Issue 15, done-when 2 and 4: what one process does to an account holds on the others at
once; application-service transactions and pushes go out once, not once per process."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.admin_helpers import make_admin
from tests.conftest import Client
from tests.scaleout.conftest import Cluster, Recorder, client_on, send

BUDGET_S = 0.100
PASSWORD = "correct horse battery"


async def _user_on_every_process(http: aiohttp.ClientSession, cluster: Cluster) -> list[Client]:
    """A new user, one client per process with the same token, each of whose processes has
    checked (and cached) the token."""
    first = await Client(http, cluster.workers[0].base_url).register(password=PASSWORD)
    clients = [client_on(http, w.base_url, first) for w in cluster.workers]
    for c in clients:
        assert (await c.get("account/whoami"))[0] == 200
    return clients


async def _login(http: aiohttp.ClientSession, base_url: str, user_id: str, password: str
                 ) -> tuple[int, Any]:
    return await Client(http, base_url).post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
        "password": password}, token=False)


async def _everywhere_within(what: str, clients: list[Client], since: float,
                             holds: Callable[[Client], Awaitable[bool]]) -> list[float]:
    """How long after `since` each client's process first shows `holds` (polled)."""
    async def one(c: Client) -> float:
        while not await holds(c):
            if time.monotonic() - since > 5:
                raise AssertionError(f"{what}: not seen on {c.base_url} after 5 s")
        return time.monotonic() - since

    delays = await asyncio.gather(*(one(c) for c in clients))
    print(f"{what}: effective after {[round(d * 1000, 1) for d in delays]} ms")
    assert max(delays) < BUDGET_S, (what, delays)
    return list(delays)


def _whoami_fails(errcode: str) -> Callable[[Client], Awaitable[bool]]:
    async def check(c: Client) -> bool:
        status, body = await c.get("account/whoami")
        return status == 401 and body.get("errcode") == errcode

    return check


async def test_a_logout_on_one_process_holds_on_the_others_within_100ms(
        cluster: Cluster, http: aiohttp.ClientSession) -> None:
    on_w1, on_w2, on_w3 = await _user_on_every_process(http, cluster)
    assert (await on_w1.post("logout", {}))[0] == 200
    await _everywhere_within("logout", [on_w2, on_w3], time.monotonic(),
                             _whoami_fails("M_UNKNOWN_TOKEN"))


async def test_a_password_change_on_one_process_holds_on_the_others_within_100ms(
        cluster: Cluster, http: aiohttp.ClientSession) -> None:
    on_w1, _, _ = await _user_on_every_process(http, cluster)
    # Another device of the same user, whose token the other processes have cached.
    status, other = await _login(http, cluster.base_url, on_w1.user_id or "", PASSWORD)
    assert status == 200, other
    others = [client_on(http, w.base_url, on_w1) for w in cluster.workers[1:]]
    for c in others:
        c.access_token = other["access_token"]
        assert (await c.get("account/whoami"))[0] == 200
    status, challenge = await on_w1.post("account/password", {"new_password": "new-pass-1"})
    assert status == 401, challenge
    status, body = await on_w1.post("account/password", {"new_password": "new-pass-1", "auth": {
        "type": "m.login.password", "session": challenge["session"],
        "identifier": {"type": "m.id.user", "user": on_w1.user_id}, "password": PASSWORD}})
    assert status == 200, body
    # The other devices are logged out everywhere; the old password works nowhere.
    await _everywhere_within("password change", others, time.monotonic(),
                             _whoami_fails("M_UNKNOWN_TOKEN"))
    for w in cluster.workers:
        assert (await _login(http, w.base_url, on_w1.user_id or "", PASSWORD))[0] == 403
        assert (await _login(http, w.base_url, on_w1.user_id or "", "new-pass-1"))[0] == 200
    assert (await on_w1.get("account/whoami"))[0] == 200  # the device that changed it stays


async def test_an_account_lock_on_one_process_holds_on_the_others_within_100ms(
        cluster: Cluster, http: aiohttp.ClientSession) -> None:
    w1 = cluster.workers[0]
    admin = await make_admin(w1, lambda: Client(http, w1.base_url))
    on_w1, on_w2, on_w3 = await _user_on_every_process(http, cluster)
    status, body = await admin.put(f"/_matrix/client/v1/admin/lock/{quote(on_w1.user_id or '')}",
                                   {"locked": True})
    assert status == 200, body
    await _everywhere_within("account lock", [on_w2, on_w3], time.monotonic(),
                             _whoami_fails("M_USER_LOCKED"))
    status, body = await admin.put(f"/_matrix/client/v1/admin/lock/{quote(on_w1.user_id or '')}",
                                   {"locked": False})
    assert status == 200, body
    await _everywhere_within("unlock", [on_w2, on_w3], time.monotonic(),
                             lambda c: _ok(c.get("account/whoami")))


async def _ok(request: Awaitable[tuple[int, Any]]) -> bool:
    return (await request)[0] == 200


async def _room_of_two(http: aiohttp.ClientSession, cluster: Cluster) -> tuple[Client, Client, str]:
    alice = await Client(http, cluster.base_url).register()
    bob = await Client(http, cluster.base_url).register()
    status, body = await alice.post("createRoom", {"preset": "private_chat", "invite": [bob.user_id]})
    assert status == 200, body
    room_id = str(body["room_id"])
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    return alice, bob, room_id


async def _send_round_robin(http: aiohttp.ClientSession, cluster: Cluster, sender: Client,
                            room_id: str, n: int) -> list[str]:
    """n messages, each acknowledged by the next process in turn, several at once."""
    clients = [client_on(http, w.base_url, sender) for w in cluster.workers]
    return list(await asyncio.gather(*(
        send(clients[i % len(clients)], room_id, f"message {i}") for i in range(n))))


async def _until(what: str, cond: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_application_service_transactions_go_out_exactly_once(
        cluster: Cluster, http: aiohttp.ClientSession, recorder: Recorder) -> None:
    sender, _, room_id = await _room_of_two(http, cluster)
    sent = await _send_round_robin(http, cluster, sender, room_id, 30)

    def delivered() -> Counter[str]:
        seen: Counter[str] = Counter()
        for txn_id, body in recorder.requests:
            if txn_id:
                for ev in body.get("events", []):
                    if ev.get("room_id") == room_id and ev["type"] == "m.room.message":
                        seen[ev["event_id"]] += 1
        return seen

    await _until("every event at the application service", lambda: set(sent) <= set(delivered()))
    await asyncio.sleep(2)  # a second copy from another process would have come by now
    counts = delivered()
    assert set(counts) == set(sent) and set(counts.values()) == {1}, counts
    txn_ids = [txn_id for txn_id, _ in recorder.requests if txn_id]
    assert len(txn_ids) == len(set(txn_ids)), "two transactions with one ID: the service drops one"


async def test_pushes_go_out_exactly_once(cluster: Cluster, http: aiohttp.ClientSession,
                                          recorder: Recorder) -> None:
    alice, bob, room_id = await _room_of_two(http, cluster)
    # Bob's phone registers through one process; the others learn of it.
    bob_w2 = client_on(http, cluster.workers[1].base_url, bob)
    status, body = await bob_w2.post("pushers/set", {
        "kind": "http", "app_id": "org.example.app", "pushkey": "bob-phone",
        "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
        "data": {"url": recorder.url + "/_matrix/push/v1/notify"}})
    assert status == 200, body
    await asyncio.sleep(0.1)
    sent = await _send_round_robin(http, cluster, alice, room_id, 30)

    def pushed() -> Counter[str]:
        return Counter(body["notification"].get("event_id") for txn_id, body in recorder.requests
                       if not txn_id and body["notification"].get("room_id") == room_id)

    await _until("every push at the gateway", lambda: set(sent) <= set(pushed()))
    await asyncio.sleep(2)
    counts = pushed()
    assert set(counts) == set(sent) and set(counts.values()) == {1}, counts


async def test_typing_on_one_process_shows_on_the_others_once(
        cluster: Cluster, http: aiohttp.ClientSession) -> None:
    alice, bob, room_id = await _room_of_two(http, cluster)
    w1, w2, w3 = cluster.workers
    bob_w3, bob_w2 = client_on(http, w3.base_url, bob), client_on(http, w2.base_url, bob)
    status, body = await bob_w3.get("sync", params={"timeout": "0"})
    assert status == 200
    since = body["next_batch"]

    def typing_in(body: Any) -> list[str] | None:
        room = body.get("rooms", {}).get("join", {}).get(room_id, {})
        for ev in room.get("ephemeral", {}).get("events", []):
            if ev["type"] == "m.typing":
                return list(ev["content"]["user_ids"])
        return None

    async def poll(c: Client, since: str) -> Any:
        status, body = await c.get("sync", params={"since": since, "timeout": "10000"})
        assert status == 200, body
        return body

    polling = asyncio.ensure_future(poll(bob_w3, since))
    await asyncio.sleep(0.3)
    alice_w1 = client_on(http, w1.base_url, alice)
    status, body = await alice_w1.put(f"rooms/{quote(room_id)}/typing/{quote(alice.user_id or '')}",
                                      {"typing": True, "timeout": 30000})
    assert status == 200, body
    started = time.monotonic()
    body = await asyncio.wait_for(polling, 15)
    while typing_in(body) is None and time.monotonic() - started < 2:
        body = await poll(bob_w3, body["next_batch"])  # woken by something else first
    assert typing_in(body) == [alice.user_id], body
    assert time.monotonic() - started < 1.0
    # Bob's next sync lands on another process: the notice he has is not sent again.
    status, again = await bob_w2.get("sync", params={"since": body["next_batch"], "timeout": "0"})
    assert status == 200 and typing_in(again) is None, again


pytestmark = pytest.mark.timeout(300)
