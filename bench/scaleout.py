"""`python -m bench.scaleout`: chat load in many rooms against 1 and 2 Veche processes on
one PostgreSQL (NATS, HAProxy with deploy/haproxy.cfg), fresh each, in alternating cycles;
throughput and CPU per message of each, their ratios cycle by cycle, and where the
machine's CPU went (Veche, PostgreSQL, HAProxy, NATS, the load generator, the rest)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from bench.cluster import HAPROXY_CFG, Cluster, cpu_window, start_cluster
from bench.scenarios import TIMELINE_1000, Api, BenchError, _percentile


@dataclass
class Load:
    rooms: int = 10
    senders_per_room: int = 2
    readers_per_room: int = 1
    messages: int = 100  # per sender
    warmup: int = 5  # per sender, before the measured round


@dataclass
class ChatRoom:
    room_id: str
    senders: list[str]
    readers: list[str]
    since: dict[str, str]


async def _settle(server: Cluster, limit_s: float = 60) -> None:
    """Until the processes are idle (under 3 % of a core together over half a second)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        cpu0 = server.cpu_seconds()
        await asyncio.sleep(0.5)
        if server.cpu_seconds() - cpu0 <= 0.015 * len(server.workers):
            return


async def setup_rooms(api: Api, server: Cluster, load: Load) -> list[ChatRoom]:
    per_room = load.senders_per_room + load.readers_per_room
    users = await api.users(load.rooms * per_room, concurrency=8, as_token=server.as_token)
    rooms = []
    for r in range(load.rooms):
        tokens = [t for _, t in users[r * per_room:(r + 1) * per_room]]
        room_id = await api.room(tokens[0], tokens[1:])
        senders, readers = tokens[:load.senders_per_room], tokens[load.senders_per_room:]
        since = {}
        for t in readers:
            body, _ = await api.sync(t, None, 0, TIMELINE_1000, "offline")
            since[t] = body["next_batch"]
        rooms.append(ChatRoom(room_id, senders, readers, since))
    return rooms


async def chat_round(api: Api, rooms: list[ChatRoom], messages: int, tag: str,
                     latencies: list[float]) -> None:
    """Every sender sends `messages`, one after the other (each waits for the last one's
    answer), while every reader long-polls its room until it has them all, in order."""
    sent_at: dict[str, float] = {}

    async def read(room: ChatRoom, token: str) -> None:
        want = len(room.senders) * messages
        seen: dict[str, list[int]] = {}
        got = 0
        deadline = time.monotonic() + 600
        while got < want:
            if time.monotonic() > deadline:
                raise BenchError(f"a reader saw {got} of {want} messages")
            body, _ = await api.sync(token, room.since[token], 30_000, TIMELINE_1000, "offline")
            now = time.perf_counter()
            room.since[token] = body["next_batch"]
            events = body.get("rooms", {}).get("join", {}).get(room.room_id, {}).get(
                "timeline", {}).get("events", [])
            for ev in events:
                text = ev.get("content", {}).get("body", "")
                if ev["type"] != "m.room.message" or not text.startswith(tag + "-"):
                    continue
                _, sender, n = text.split("-")
                seen.setdefault(sender, []).append(int(n))
                latencies.append(now - sent_at[text])
                got += 1
        for sender, ns in seen.items():
            if ns != list(range(messages)):
                raise BenchError(f"sender {sender}'s messages out of order or duplicated")

    async def send(r: int, room: ChatRoom, s: int, token: str) -> None:
        for n in range(messages):
            text = f"{tag}-r{r}s{s}-{n}"
            sent_at[text] = time.perf_counter()
            await api.call("PUT", f"rooms/{quote(room.room_id)}/send/m.room.message/{text}",
                           token, {"msgtype": "m.text", "body": text})

    readers = [asyncio.create_task(read(room, t)) for room in rooms for t in room.readers]
    await asyncio.sleep(0.3)  # the long-polls are parked by now
    try:
        await asyncio.gather(*[send(r, room, s, t) for r, room in enumerate(rooms)
                               for s, t in enumerate(room.senders)])
        await asyncio.gather(*readers)
    finally:
        for task in readers:
            task.cancel()


@contextmanager
def profiled(server: Cluster, into: Path | None) -> Iterator[None]:
    """py-spy (installed from PyPI) sampling every Veche process over the block, its
    collapsed stacks into `into`/<process>.txt."""
    if into is None:
        yield
        return
    into.mkdir(parents=True, exist_ok=True)
    spies = [subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                               str(p.pid), "--format", "raw", "--rate", "200", "--nonblocking",
                               "--output", str(into / f"{name}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name, p in server.workers.items()]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)


async def chat_rooms(server: Cluster, load: Load, profile: Path | None = None
                     ) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        api = Api(server.base_url, session)
        rooms = await setup_rooms(api, server, load)
        await chat_round(api, rooms, load.warmup, "w", [])
        await _settle(server)
        latencies: list[float] = []
        with profiled(server, profile), cpu_window(server) as window:
            await chat_round(api, rooms, load.messages, "m", latencies)
    total = load.rooms * load.senders_per_room * load.messages
    per_1000 = {f"{k}_cpu_s_per_1000": v / total * 1000 for k, v in window.parts.items()}
    return {"messages": total, "elapsed_s": window.elapsed, "messages_per_s": total / window.elapsed,
            "latency_p50_ms": _percentile(latencies, 0.5) * 1000,
            "latency_p99_ms": _percentile(latencies, 0.99) * 1000,
            **per_1000,
            **{f"{k}_cores": v / window.elapsed for k, v in window.parts.items()},
            **{f"{k}_runq_cores": v / window.elapsed for k, v in window.waits.items()},
            "notes": window.notes}


KINDS = {"single": (1, False), "1": (1, True), "2": (2, True), "3": (3, True)}
LABELS = {"single": "1 process, no bus/balancer", "1": "1 process", "2": "2 processes",
          "3": "3 processes"}


def kind_parts(kind: str, default_cfg: Path) -> tuple[int, bool, Path]:
    """"2" is 2 processes behind the default balancer configuration, "2:FILE" behind FILE."""
    name, _, cfg = kind.partition(":")
    n, bus = KINDS[name]
    return n, bus, Path(cfg) if cfg else default_cfg


def label(kind: str) -> str:
    name, _, cfg = kind.partition(":")
    return LABELS[name] + (f" ({Path(cfg).name})" if cfg else "")


def run_kind(kind: str, load: Load, balancer_cfg: Path, profile: Path | None = None
             ) -> dict[str, Any]:
    n, bus, cfg = kind_parts(kind, balancer_cfg)
    with tempfile.TemporaryDirectory(prefix="veche-scaleout-") as tmp:
        server = start_cluster(Path(tmp), n, bus, cfg)
        try:
            time.sleep(3)  # start-up work (the bus's join wait, caches) out of the way
            result = asyncio.run(chat_rooms(server, load, profile))
        finally:
            server.stop()
    # What this machine could do with nothing else on it: each process one core at most
    # (one Python interpreter), and the whole stack (Veche, PostgreSQL, HAProxy, NATS, the
    # generator) within 2 cores, at the CPU per message measured here.
    stack = sum(result[f"{k}_cpu_s_per_1000"] for k in STACK)
    result["stack_cpu_s_per_1000"] = stack
    result["ceiling_messages_per_s"] = min(
        n * 1000 / result["veche_cpu_s_per_1000"], CORES * 1000 / stack)
    return result


CORES = os.cpu_count() or 1
STACK = ("veche", "postgres", "postgres_shared", "haproxy", "nats", "generator")


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


ROWS = [("messages_per_s", "messages/s"), ("latency_p50_ms", "send-to-sync p50 (ms)"),
        ("latency_p99_ms", "send-to-sync p99 (ms)"),
        ("veche_cpu_s_per_1000", "Veche CPU-s per 1,000 messages (all processes)"),
        ("postgres_cpu_s_per_1000", "PostgreSQL backends CPU-s per 1,000"),
        ("postgres_shared_cpu_s_per_1000", "PostgreSQL shared processes CPU-s per 1,000"),
        ("haproxy_cpu_s_per_1000", "HAProxy CPU-s per 1,000"),
        ("nats_cpu_s_per_1000", "NATS CPU-s per 1,000"),
        ("generator_cpu_s_per_1000", "load generator CPU-s per 1,000"),
        ("stack_cpu_s_per_1000", "all of these CPU-s per 1,000"),
        ("ceiling_messages_per_s", "messages/s this machine could do alone (see below)"),
        ("veche_cores", "cores busy: Veche"), ("w1_cores", "  w1"), ("w2_cores", "  w2"),
        ("postgres_cores", "cores busy: PostgreSQL backends"),
        ("generator_cores", "cores busy: load generator"),
        ("haproxy_cores", "cores busy: HAProxy"), ("nats_cores", "cores busy: NATS"),
        ("veche_runq_cores", "threads ready and waiting for a core, average: Veche"),
        ("w1_runq_cores", "  w1"), ("w2_runq_cores", "  w2"),
        ("postgres_runq_cores", "threads ready and waiting for a core: PostgreSQL backends"),
        ("generator_runq_cores", "threads ready and waiting for a core: load generator"),
        ("machine_cores", "cores busy: whole machine"),
        ("rest_of_machine_cores", "cores busy: everything else (other sessions)")]


def render(runs: dict[str, list[dict[str, Any]]], kinds: list[str], load: Load,
           command: str) -> str:
    med = {k: {m: statistics.median(r[m] for r in runs[k]) for m, _ in ROWS
               if all(m in r for r in runs[k])} for k in kinds}
    lines = [f"Command: `{command}`  ", f"Load: {vars(load)}", "",
             "| median of cycles | " + " | ".join(label(k) for k in kinds) + " |",
             "|---|" + "---|" * len(kinds)]
    for m, title in ROWS:
        if any(m in med[k] for k in kinds):
            lines.append(f"| {title} | " + " | ".join(
                _fmt(med[k][m]) if m in med[k] else "—" for k in kinds) + " |")
    for other in [k for k in kinds if "1" in kinds and k != "1"]:
        lines += ["", f"{label(other)} / 1 process, cycle by cycle (the same cycle, fresh"
                  " servers):", ""]
        tput, cpu, ceiling = [], [], []
        for c, (one, two) in enumerate(zip(runs["1"], runs[other], strict=False)):
            tput.append(two["messages_per_s"] / one["messages_per_s"])
            cpu.append(two["veche_cpu_s_per_1000"] / one["veche_cpu_s_per_1000"])
            ceiling.append(two["ceiling_messages_per_s"] / one["ceiling_messages_per_s"])
            lines.append(f"- cycle {c + 1}: throughput {_fmt(tput[-1])}x "
                         f"({_fmt(one['messages_per_s'])} -> {_fmt(two['messages_per_s'])} msg/s),"
                         f" Veche CPU per message {_fmt(cpu[-1])}x, ceiling {_fmt(ceiling[-1])}x;"
                         f" other sessions {_fmt(one['rest_of_machine_cores'])} and "
                         f"{_fmt(two['rest_of_machine_cores'])} cores")
        lines.append(f"- median: throughput {_fmt(statistics.median(tput))}x, Veche CPU per "
                     f"message {_fmt(statistics.median(cpu))}x, ceiling "
                     f"{_fmt(statistics.median(ceiling))}x")
    lines += ["", f"How measured: {load.rooms} public rooms, each with {load.senders_per_room}"
              f" senders and {load.readers_per_room} reader(s) long-polling /sync (timeout"
              f" 30 s); every sender sends {load.messages} messages one after the other"
              f" ({load.warmup} each before, unmeasured), and the window ends when every reader"
              " has all of its room's, in order. Fresh processes and a fresh PostgreSQL"
              " database for each run; the kinds alternate, in reverse order every other"
              " cycle. CPU is utime+stime from /proc/<pid>/stat of each Veche process, of the"
              " database's PostgreSQL backends (pg_stat_activity), of PostgreSQL's shared"
              " processes, HAProxy and nats-server, getrusage() of the load generator (one"
              " asyncio process, aiohttp), and /proc/stat for the whole machine (other"
              " sessions' work is the remainder). Run-queue wait (/proc/<pid>/task/*/schedstat)"
              " is time each thread was ready to run and waited for a core, summed over"
              " the threads and divided by the window. The ceiling is what this machine could do"
              " with nothing else on it, from the CPU per message measured: each Veche"
              " process at most one core, and all of the stack within all the cores.", ""]
    notes = sorted({n for k in kinds for r in runs[k] for n in r.get("notes", [])})
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    parser.add_argument("--kinds", default="1,2",
                        help="comma-separated: single (one process, no NATS or HAProxy), 1, 2,"
                        " 3 (processes with NATS behind HAProxy); default 1,2")
    parser.add_argument("--cycles", type=int, default=3,
                        help="cycles; each runs every kind once, fresh, the order reversed"
                        " every other cycle (default 3)")
    parser.add_argument("--balancer-config", default=str(HAPROXY_CFG),
                        help="HAProxy configuration (default deploy/haproxy.cfg)")
    parser.add_argument("--json", help="also write every cycle's figures here")
    parser.add_argument("--out", help="also write the Markdown table here")
    parser.add_argument("--profile", help="py-spy every Veche process over each measured"
                        " window, collapsed stacks into PROFILE/<kind>-c<cycle>/<process>.txt"
                        " (CPU figures then include py-spy's cost to the processes)")
    parser.add_argument("--from-json", help="no runs: the table of an earlier run's --json")
    for name, default in vars(Load()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    args = parser.parse_args(argv)
    load = Load(**{k: getattr(args, k) for k in vars(Load())})
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := [k for k in kinds if k.partition(":")[0] not in KINDS]:
        parser.error(f"unknown kinds: {', '.join(unknown)}")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    if args.from_json:
        runs = json.loads(Path(args.from_json).read_text())
        kinds, args.cycles = [k for k in kinds if k in runs], 0
    for cycle in range(args.cycles):
        for kind in (kinds if cycle % 2 == 0 else kinds[::-1]):
            print(f"cycle {cycle + 1}: {label(kind)} ...", file=sys.stderr, flush=True)
            profile = (Path(args.profile) / f"{kind.replace('/', '_')}-c{cycle + 1}"
                       if args.profile else None)
            result = run_kind(kind, load, Path(args.balancer_config), profile)
            runs[kind].append(result)
            print(f"  {_fmt(result['messages_per_s'])} msg/s, Veche "
                  f"{_fmt(result['veche_cpu_s_per_1000'])} CPU-s/1,000, machine "
                  f"{_fmt(result['machine_cores'])} cores busy", file=sys.stderr, flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(runs, indent=1))
    command = "python -m bench.scaleout " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(runs, kinds, load, command.strip())
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
