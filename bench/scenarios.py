"""The scenarios: real client-server API calls only, so any homeserver can be measured."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from bench.servers import Server

TIMELINE_1000 = orjson.dumps({"room": {"timeline": {"limit": 1000}}}).decode()
_names = itertools.count()


class BenchError(Exception):
    pass


@dataclass
class Sizes:
    senders: int = 20
    messages: int = 50
    readers: int = 3
    rooms: int = 200
    room_events: int = 200
    polls: int = 2000
    poll_users: int = 50
    joiners: int = 100
    history: int = 5000
    search_events: int = 100_000
    wakes: int = 200
    big_room_members: int = 5000
    big_room_messages: int = 4000
    fed_messages: int = 1000
    fed_rate: int = 5  # messages a second each way (0: as fast as the sender and WINDOW allow)
    shaped_rooms: int = 50
    shaped_messages: int = 20
    shaped_live_s: int = 60

    @classmethod
    def quick(cls) -> Sizes:
        return cls(senders=4, messages=10, readers=2, rooms=5, room_events=10, polls=40,
                   poll_users=4, joiners=5, history=150, search_events=200, wakes=5,
                   big_room_members=30, big_room_messages=40, fed_messages=20,
                   fed_rate=10, shaped_rooms=3, shaped_messages=3, shaped_live_s=8)


class Api:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base = base_url
        self.session = session

    async def call(self, method: str, path: str, token: str | None = None, body: Any = None,
                   params: dict[str, str] | None = None, timeout: float = 300) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = orjson.dumps(body) if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.base + "/_matrix/client/v3/" + path, data=data, params=params,
            headers=headers, timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise BenchError(f"{method} {path}: {resp.status} {raw[:300]!r}")
            return orjson.loads(raw), len(raw)

    async def register(self) -> tuple[str, str]:
        name = f"b{time.time_ns() % 10**10}x{next(_names)}"
        body = {"username": name, "password": "bench-password-1", "inhibit_login": False}
        async with self.session.post(self.base + "/_matrix/client/v3/register", json=body) as r:
            session = (await r.json()).get("session")
        out, _ = await self.call("POST", "register", body={
            **body, "auth": {"type": "m.login.dummy", "session": session}})
        return out["user_id"], out["access_token"]

    async def register_via_appservice(self, as_token: str) -> tuple[str, str]:
        body = {"type": "m.login.application_service",
                "username": f"as-{time.time_ns() % 10**10}x{next(_names)}"}
        out, _ = await self.call("POST", "register", as_token, body)
        return out["user_id"], out["access_token"]

    async def users(self, n: int, concurrency: int = 10,
                    as_token: str | None = None) -> list[tuple[str, str]]:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> tuple[str, str]:
            async with sem:
                if as_token:
                    return await self.register_via_appservice(as_token)
                return await self.register()

        return list(await asyncio.gather(*[one() for _ in range(n)]))

    async def room(self, token: str, members: list[str], concurrency: int = 10) -> str:
        out, _ = await self.call("POST", "createRoom", token, {"preset": "public_chat"})
        room_id: str = out["room_id"]
        sem = asyncio.Semaphore(concurrency)

        async def join(t: str) -> None:
            async with sem:
                await self.call("POST", f"join/{quote(room_id)}", t, {})

        await asyncio.gather(*[join(t) for t in members])
        return room_id

    async def send(self, token: str, room_id: str, txn: str, text: str) -> None:
        await self.call("PUT", f"rooms/{quote(room_id)}/send/m.room.message/{txn}", token,
                        {"msgtype": "m.text", "body": text})

    async def sync(self, token: str, since: str | None = None, timeout_ms: int = 0,
                   flt: str | None = None, presence: str = "online") -> tuple[Any, int]:
        params = {"timeout": str(timeout_ms), "set_presence": presence}
        if since:
            params["since"] = since
        if flt:
            params["filter"] = flt
        return await self.call("GET", "sync", token, params=params, timeout=timeout_ms / 1000 + 120)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def chat(server: Server, api: Api, sizes: Sizes) -> dict[str, float]:
    """Scenarios 1-3: senders into one room while readers long-poll; CPU and memory."""
    senders = await api.users(sizes.senders)
    readers = await api.users(sizes.readers)
    room_id = await api.room(senders[0][1], [t for _, t in senders[1:] + readers])
    total = sizes.senders * sizes.messages
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    seen: list[dict[str, list[int]]] = [{} for _ in readers]

    async def read(i: int, token: str, since: str) -> None:
        got = 0
        deadline = time.monotonic() + 600
        while got < total:
            if time.monotonic() > deadline:
                raise BenchError(f"reader {i} saw {got} of {total} messages")
            body, _ = await api.sync(token, since, 30_000, TIMELINE_1000)
            now = time.perf_counter()
            since = body["next_batch"]
            room = body.get("rooms", {}).get("join", {}).get(room_id, {})
            for ev in room.get("timeline", {}).get("events", []):
                text = ev.get("content", {}).get("body", "")
                if ev["type"] != "m.room.message" or not text.startswith("m"):
                    continue
                sender, n = text[1:].split("-")
                seen[i].setdefault(sender, []).append(int(n))
                latencies.append(now - sent_at[text])
                got += 1

    starts = [(await api.sync(t, None, 0, TIMELINE_1000))[0]["next_batch"] for _, t in readers]
    tasks = [asyncio.create_task(read(i, t, s))
             for i, ((_, t), s) in enumerate(zip(readers, starts, strict=True))]

    async def send_all(i: int, token: str) -> None:
        for j in range(sizes.messages):
            text = f"m{i}-{j}"
            sent_at[text] = time.perf_counter()
            await api.send(token, room_id, f"c{j}", text)

    await asyncio.sleep(1)
    idle_rss = server.rss_mb()
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    await asyncio.gather(*[send_all(i, t) for i, (_, t) in enumerate(senders)])
    await asyncio.gather(*tasks)
    elapsed, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
    for i, per_sender in enumerate(seen):
        if sum(len(v) for v in per_sender.values()) != total:
            raise BenchError(f"reader {i} got duplicates or misses")
        for sender, ns in per_sender.items():
            if ns != list(range(sizes.messages)):
                raise BenchError(f"reader {i}: sender {sender} out of order or duplicated")
    return {
        "messages_per_s": total / elapsed,
        "latency_p50_ms": _percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": _percentile(latencies, 0.99) * 1000,
        "cpu_s_per_1000_msgs": cpu / total * 1000,
        "cpu_s_per_1000_deliveries": cpu / (total * sizes.readers) * 1000,
        "rss_before_chat_mb": idle_rss,
        "rss_after_chat_mb": server.rss_mb(),
    }


async def many_rooms(server: Server, api: Api, sizes: Sizes) -> dict[str, float]:
    """Scenario 4: one user in many rooms with history; initial and incremental /sync."""
    (_, token), = await api.users(1)
    sem = asyncio.Semaphore(20)
    t0 = time.perf_counter()

    async def fill(r: int) -> str:
        async with sem:
            out, _ = await api.call("POST", "createRoom", token,
                                    {"preset": "private_chat", "name": f"room {r}"})
            for e in range(sizes.room_events):
                await api.send(token, out["room_id"], f"e{e}", f"event {e} of room {r}")
            return str(out["room_id"])

    rooms = await asyncio.gather(*[fill(r) for r in range(sizes.rooms)])
    setup = time.perf_counter() - t0
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    body, size = await api.sync(token, presence="offline")
    initial, initial_cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
    if len(body["rooms"]["join"]) != sizes.rooms:
        raise BenchError(f"initial sync has {len(body['rooms']['join'])} rooms")
    await api.send(token, rooms[0], "new", "one more")
    t0 = time.perf_counter()
    inc, inc_size = await api.sync(token, body["next_batch"], presence="offline")
    incremental = time.perf_counter() - t0
    if rooms[0] not in inc["rooms"]["join"]:
        raise BenchError("incremental sync misses the new message")
    return {"setup_s": setup, "initial_sync_s": initial, "initial_sync_cpu_s": initial_cpu,
            "initial_sync_kb": size / 1024, "incremental_sync_ms": incremental * 1000,
            "incremental_sync_kb": inc_size / 1024}


async def idle_polls(server: Server, api: Api, sizes: Sizes) -> dict[str, float]:
    """Scenario 5: many clients holding a long-poll /sync; one message wakes them all."""
    users = await api.users(sizes.poll_users)
    room_id = await api.room(users[0][1], [t for _, t in users[1:]])
    tokens = {t: (await api.sync(t, presence="offline"))[0]["next_batch"] for _, t in users}
    before = server.rss_mb()
    woke: list[float] = []

    async def poll(i: int) -> None:
        token = users[i % len(users)][1]
        since = tokens[token]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            body, _ = await api.sync(token, since, 120_000, presence="offline")
            since = body["next_batch"]
            if room_id in body.get("rooms", {}).get("join", {}):
                woke.append(time.perf_counter())
                return
        raise BenchError("a long-poll never saw the message")

    tasks = [asyncio.create_task(poll(i)) for i in range(sizes.polls)]
    await asyncio.sleep(5 + sizes.polls / 500)
    holding = server.rss_mb()
    t0 = time.perf_counter()
    await api.send(users[0][1], room_id, "wake", "wake up")
    await asyncio.gather(*tasks)
    return {"polls_held": float(len(woke)), "rss_growth_mb": holding - before,
            "wake_all_s": max(woke) - t0}


async def join_and_read(server: Server, api: Api, sizes: Sizes) -> dict[str, float]:
    """Scenario 6: users joining one room; paging back through its history."""
    users = await api.users(sizes.joiners + 1)
    out, _ = await api.call("POST", "createRoom", users[0][1], {"preset": "public_chat"})
    room_id = out["room_id"]
    sem = asyncio.Semaphore(10)

    async def join(token: str) -> None:
        async with sem:
            await api.call("POST", f"join/{quote(room_id)}", token, {})

    t0 = time.perf_counter()
    await asyncio.gather(*[join(t) for _, t in users[1:]])
    joins = time.perf_counter() - t0
    posters = [t for _, t in users[:10]]

    async def post(k: int) -> None:
        token = posters[k % len(posters)]
        for n in range(k, sizes.history, len(posters)):
            await api.send(token, room_id, f"h{n}", f"history {n}")

    t0 = time.perf_counter()
    await asyncio.gather(*[post(k) for k in range(len(posters))])
    fill = time.perf_counter() - t0
    t0 = time.perf_counter()
    messages, pages, frm = 0, 0, None
    while pages < 10_000:
        params = {"dir": "b", "limit": "100"}
        if frm:
            params["from"] = frm
        body, _ = await api.call("GET", f"rooms/{quote(room_id)}/messages", users[0][1],
                                 params=params)
        pages += 1
        messages += sum(1 for e in body["chunk"] if e["type"] == "m.room.message")
        if not body.get("end") or not body["chunk"]:
            break
        frm = body["end"]
    if messages != sizes.history:
        raise BenchError(f"paginated {messages} of {sizes.history} messages")
    return {"joins_s": joins, "history_fill_s": fill, "paginate_s": time.perf_counter() - t0,
            "pages": float(pages)}


# Common English words: a search for "the" matches nearly every message, as broad searches do.
WORDS = ("a and of to in is you that it he was for on are as with his they at be this have from"
         " or one had by word but not what all were we when your can said there use an each"
         " which she do how their if will up other about out many then them these so some her"
         " would make like him into time has look two more write go see number no way could"
         " people my than first water been call who oil its now find long down day did get come"
         " made may part").split()
BROAD_SEARCH = {"search_categories": {"room_events": {"search_term": "the"}}}


async def heavy_search(server: Server, api: Api, sizes: Sizes) -> dict[str, float]:
    """Scenario 7: a room of many messages; /sync wake-ups while another client searches it."""
    users = await api.users(21)
    (_, searcher), (_, waker), (_, sleeper) = users[:3]
    out, _ = await api.call("POST", "createRoom", searcher, {"preset": "public_chat"})
    big = out["room_id"]
    fillers = [t for _, t in users[1:]]
    for t in fillers:
        await api.call("POST", f"join/{quote(big)}", t, {})
    rng = random.Random(7)
    t0 = time.perf_counter()

    async def fill(k: int) -> None:
        for n in range(k, sizes.search_events, len(fillers)):
            words = " ".join(rng.choice(WORDS) for _ in range(15))
            await api.send(fillers[k], big, f"s{n}", f"the {words}")

    await asyncio.gather(*[fill(k) for k in range(len(fillers))])
    fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found, _ = await api.call("POST", "search", searcher, BROAD_SEARCH)
    search_s = time.perf_counter() - t0
    if not found["search_categories"]["room_events"]["results"]:
        raise BenchError("the broad search found nothing")
    small = await api.room(waker, [sleeper])
    since = (await api.sync(sleeper, presence="offline"))[0]["next_batch"]
    flt = orjson.dumps({"room": {"rooms": [small]}}).decode()
    wake_n = itertools.count()

    async def wakes() -> list[float]:
        nonlocal since
        out = []
        for _ in range(sizes.wakes):
            text = f"w{next(wake_n)}"
            poll = asyncio.create_task(api.sync(sleeper, since, 30_000, flt, "offline"))
            await asyncio.sleep(rng.uniform(0.01, 0.05))  # the poll is parked by now
            t = time.perf_counter()
            await api.send(waker, small, text, text)
            while True:
                body, _ = await poll
                since = body["next_batch"]
                events = body.get("rooms", {}).get("join", {}).get(small, {}).get(
                    "timeline", {}).get("events", [])
                if any(e.get("content", {}).get("body") == text for e in events):
                    break
                poll = asyncio.create_task(api.sync(sleeper, since, 30_000, flt, "offline"))
            out.append(time.perf_counter() - t)
        return out

    idle = await wakes()
    searching = True
    searches: list[float] = []

    async def search_loop() -> None:
        while searching:
            t = time.perf_counter()
            await api.call("POST", "search", searcher, BROAD_SEARCH)
            searches.append(time.perf_counter() - t)

    searcher_task = asyncio.create_task(search_loop())
    await asyncio.sleep(0.2)
    loaded = await wakes()
    searching = False
    await searcher_task
    return {"fill_s": fill_s, "search_s": search_s,
            "search_loop_s": _percentile(searches, 0.5), "searches": float(len(searches)),
            "wake_p50_ms": _percentile(idle, 0.5) * 1000,
            "wake_p99_ms": _percentile(idle, 0.99) * 1000,
            "wake_searching_p50_ms": _percentile(loaded, 0.5) * 1000,
            "wake_searching_p99_ms": _percentile(loaded, 0.99) * 1000}


async def _settle(server: Server, limit_s: float = 120) -> float:
    """Wait until the server is idle (under 2 % of a core over half a second): work left over
    from setup (or from the previous round) must not be counted against the next one."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        cpu0 = server.cpu_seconds()
        await asyncio.sleep(0.5)
        if server.cpu_seconds() - cpu0 <= 0.01:
            break
    return time.monotonic() - t0


BIG_ROOM_SENDERS = 4
SMALL_ROOM = 5
BIG_ROOM_ROUND = 100  # messages per round: four rounds make a cycle


@dataclass
class MemberRoom:
    room_id: str
    senders: list[str]  # access tokens
    reader: str
    since: str = ""


async def member_rooms(api: Api, sizes_by_room: tuple[int, ...],
                       as_token: str | None) -> list[MemberRoom]:
    """Public rooms of the given sizes, members registered and joined through the API; in
    each, the first BIG_ROOM_SENDERS members send and the next one reads."""
    # Registration with a password hashes it (~0.15 s of the server's CPU each): through the
    # server's application service when it has one, else keep both cores busy.
    users = await api.users(sum(sizes_by_room), concurrency=8, as_token=as_token)
    rooms = []
    for n in sizes_by_room:
        mine, users = users[:n], users[n:]
        tokens = [t for _, t in mine]
        room_id = await api.room(tokens[0], tokens[1:], concurrency=20)
        rooms.append(MemberRoom(room_id, tokens[:BIG_ROOM_SENDERS], tokens[BIG_ROOM_SENDERS]))
    return rooms


async def check_members(api: Api, rooms: list[MemberRoom], sizes_by_room: tuple[int, ...]) -> None:
    """Every member joined (an initial /sync of each reader), and the readers' sync tokens."""
    for n, room in zip(sizes_by_room, rooms, strict=True):
        body, _ = await api.sync(room.reader, None, 0, TIMELINE_1000, "offline")
        state = body["rooms"]["join"][room.room_id]
        # Veche leaves empty sections out of /sync (core/sync_shape.py).
        events = [*state.get("state", {}).get("events", []),
                  *state.get("timeline", {}).get("events", [])]
        joined = {e["state_key"] for e in events
                  if e["type"] == "m.room.member" and e["content"].get("membership") == "join"}
        if len(joined) != n:
            raise BenchError(f"a room of {n} members has {len(joined)} joined")
        room.since = body["next_batch"]


async def send_round(server: Server, api: Api, room: MemberRoom, n: int, tag: str) -> float:
    """n messages from the room's senders while its reader long-polls; the server's CPU from
    the first send until the reader has them all and the server is idle again."""
    want = {f"{tag}-{k}" for k in range(n)}

    async def read() -> None:
        seen: set[str] = set()
        deadline = time.monotonic() + 600
        while seen != want:
            if time.monotonic() > deadline:
                raise BenchError(f"the reader saw {len(seen)} of {n} messages")
            body, _ = await api.sync(room.reader, room.since, 30_000, TIMELINE_1000, "offline")
            room.since = body["next_batch"]
            events = body.get("rooms", {}).get("join", {}).get(room.room_id, {}).get(
                "timeline", {}).get("events", [])
            seen.update(e.get("content", {}).get("body") for e in events
                        if e["type"] == "m.room.message")

    async def send(i: int, token: str) -> None:
        for k in range(i, n, len(room.senders)):
            await api.send(token, room.room_id, f"{tag}-{k}", f"{tag}-{k}")

    reading = asyncio.create_task(read())
    await asyncio.sleep(0.2)  # the long-poll is parked by now
    cpu0 = server.cpu_seconds()
    await asyncio.gather(*[send(i, t) for i, t in enumerate(room.senders)])
    await reading
    await _settle(server, 30)
    return server.cpu_seconds() - cpu0


async def big_room(server: Server, api: Api, sizes: Sizes) -> dict[str, float]:
    """Scenario 8: the same messages sent into a room of 5 members and into a room of
    big_room_members: a send must not cost more because the room is big (state groups, not
    copies of the room's state)."""
    sizes_by_room = (SMALL_ROOM, max(sizes.big_room_members, SMALL_ROOM))
    t0 = time.perf_counter()
    rooms = await member_rooms(api, sizes_by_room, server.as_token)
    setup_s = time.perf_counter() - t0
    await check_members(api, rooms, sizes_by_room)
    settle_s = await _settle(server)
    # Cycles of small, big, big, small: drift (a growing database, a busier machine) falls on
    # both rooms alike within a cycle, and the median of the cycles' ratios shrugs off a
    # cycle that other work on the machine disturbed.
    cycles = max(1, sizes.big_room_messages // (4 * BIG_ROOM_ROUND))
    per_round = max(1, sizes.big_room_messages // (4 * cycles))
    cpu = [0.0, 0.0]
    ratios = []
    for c in range(cycles):
        this = [0.0, 0.0]
        for r, which in enumerate((0, 1, 1, 0)):
            this[which] += await send_round(server, api, rooms[which], per_round, f"c{c}r{r}")
        cpu = [cpu[0] + this[0], cpu[1] + this[1]]
        ratios.append(this[1] / this[0] if this[0] else float("inf"))
    small, big = (x / (2 * per_round * cycles) * 1000 for x in cpu)
    return {"setup_s": setup_s, "settle_s": settle_s,
            "messages_each": float(2 * per_round * cycles), "cycles": float(cycles),
            "small_cpu_ms_per_msg": small, "big_cpu_ms_per_msg": big,
            "big_over_small": statistics.median(ratios),
            "big_over_small_min": min(ratios), "big_over_small_max": max(ratios)}


SCENARIOS = {"chat": chat, "many_rooms": many_rooms, "idle_polls": idle_polls,
             "join_and_read": join_and_read, "heavy_search": heavy_search, "big_room": big_room}
# Filling a room with 100,000 messages takes Synapse hours, and registering 5,000 users with
# real password hashing much longer: run these against Synapse only when asked for by name.
VECHE_ONLY = {"heavy_search", "big_room"}
