"""A user-space link shaper on a TUN device: rate, delay, loss and a queue, as netem would.

This kernel has no sch_netem, so the shaped link is made in user space (bench/netns.py sets
up the namespace). The TUN device `veche0` holds the local address LOCAL (10.77.0.1, where
the servers listen) and routes FAR (10.77.1.0/24) to itself. A client connecting to
SERVER_ALIAS (10.77.1.1) sends its packets into the TUN device; the shaper reflects each one
back into it as if it came from outside, its addresses rewritten so that

    client 10.77.0.1:e -> 10.77.1.1:p   becomes   10.77.1.2:e -> 10.77.0.1:p   (to the server)
    server 10.77.0.1:p -> 10.77.1.2:e   becomes   10.77.1.1:p -> 10.77.0.1:e   (to the client)

so both ends are ordinary local sockets and every byte between them crosses the shaper once.
The link is one queue for both directions (a shared 64 kbit/s, like a half-duplex radio),
then a fixed one-way delay. Loss is drawn per packet offered to the link from a seeded
generator, so each run (each server) sees the same sequence of losses.

Run as `python -m bench.shaper` inside the namespace; it prints "ready" once the device is
up, counts bytes per direction into --stats (JSON) every half second, and starts its loss
sequence again on SIGUSR1.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import ipaddress
import json
import os
import random
import select
import signal
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

DEVICE = "veche0"
LOCAL = "10.77.0.1"
SERVER_ALIAS = "10.77.1.1"  # where clients connect to reach a server through the link
CLIENT_ALIAS = "10.77.1.2"  # where the server sees those clients come from
FAR_NET = "10.77.1.0/24"

RATE_BPS = 64_000
DELAY_S = 0.5
LOSS = 0.03
QUEUE_PACKETS = 1000
SEED = 14

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

_LOCAL = ipaddress.IPv4Address(LOCAL).packed
_SERVER = ipaddress.IPv4Address(SERVER_ALIAS).packed
_CLIENT = ipaddress.IPv4Address(CLIENT_ALIAS).packed


@dataclass
class Link:
    """The pure model: when (if at all) a packet offered at `now` comes out the far end."""

    rate_bps: float = RATE_BPS
    delay_s: float = DELAY_S
    loss: float = LOSS
    queue_packets: int = QUEUE_PACKETS
    seed: int = SEED
    busy_until: float = 0.0
    # Times at which the packets on the link (sent or waiting) finish being serialised.
    _departures: deque[float] = field(default_factory=deque)
    offered: int = 0
    lost: int = 0
    overflowed: int = 0

    def __post_init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        """Start the loss sequence again (each measured phase starts it afresh, so both
        servers' phases see the same one whatever came before)."""
        self._rng = random.Random(self.seed)

    def queued(self, now: float) -> int:
        """Packets waiting or being serialised at `now`."""
        while self._departures and self._departures[0] <= now:
            self._departures.popleft()
        return len(self._departures)

    def offer(self, now: float, size: int) -> float | None:
        """The time the packet of `size` bytes arrives, or None if it is lost or the queue
        is full. A loss is drawn for every packet offered, so the sequence does not depend
        on the queue."""
        self.offered += 1
        lost = self._rng.random() < self.loss
        if self.queued(now) >= self.queue_packets:
            self.overflowed += 1
            return None
        if lost:
            self.lost += 1
            return None
        start = max(now, self.busy_until)
        self.busy_until = start + size * 8 / self.rate_bps
        self._departures.append(self.busy_until)
        return self.busy_until + self.delay_s


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reflect(packet: bytes) -> bytes | None:
    """The packet as the other end must receive it (see the module's docstring), its IP
    and TCP checksums recomputed; None for what the link does not carry (not IPv4 TCP
    between the local address and an alias)."""
    if len(packet) < 40 or packet[0] >> 4 != 4 or packet[9] != 6:
        return None
    ihl = (packet[0] & 0x0F) * 4
    src, dst = packet[12:16], packet[16:20]
    if src != _LOCAL:
        return None
    if dst == _SERVER:
        new_src = _CLIENT
    elif dst == _CLIENT:
        new_src = _SERVER
    else:
        return None
    header = bytearray(packet[:ihl])
    header[12:16], header[16:20] = new_src, _LOCAL
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", _checksum(bytes(header)))
    segment = bytearray(packet[ihl:])
    segment[16:18] = b"\0\0"
    pseudo = new_src + _LOCAL + struct.pack("!BBH", 0, 6, len(segment))
    segment[16:18] = struct.pack("!H", _checksum(pseudo + bytes(segment)))
    return bytes(header + segment)


def to_server(packet: bytes) -> bool:
    """Whether a packet read from the device is on its way to a server (else to a client)."""
    return packet[16:20] == _SERVER


def open_tun(name: str = DEVICE) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def run(fd: int, link: Link, stats_path: Path | None, trace: TextIO | None = None) -> None:
    pending: list[tuple[float, int, bytes]] = []
    seq = 0
    stats = {"up_bytes": 0, "down_bytes": 0, "up_packets": 0, "down_packets": 0,
             "offered": 0, "lost": 0, "overflowed": 0}
    next_stats = 0.0
    while True:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, out = heapq.heappop(pending)
            os.write(fd, out)
        if stats_path is not None and now >= next_stats:
            stats.update(offered=link.offered, lost=link.lost, overflowed=link.overflowed)
            tmp = stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stats))
            tmp.replace(stats_path)
            next_stats = now + 0.5
        wait = min(pending[0][0] - now if pending else 0.5, max(next_stats - now, 0.0), 0.5)
        ready, _, _ = select.select([fd], [], [], max(wait, 0.0))
        if not ready:
            continue
        packet = os.read(fd, 65535)
        out = reflect(packet)
        if out is None:
            continue
        direction = "up" if to_server(packet) else "down"
        stats[f"{direction}_bytes"] += len(packet)
        stats[f"{direction}_packets"] += 1
        now = time.monotonic()
        arrive = link.offer(now, len(packet))
        if trace is not None:
            trace.write(_trace_line(now, direction, packet, arrive))
        if arrive is not None:
            seq += 1
            heapq.heappush(pending, (arrive, seq, out))


def _trace_line(now: float, direction: str, packet: bytes, arrive: float | None) -> str:
    """One packet as a JSON line: when, which way, size, TCP ports, sequence numbers, flags,
    payload, and when it arrives (null: lost)."""
    ihl = (packet[0] & 0x0F) * 4
    sport, dport, seq, ack, off_flags = struct.unpack("!HHIIH", packet[ihl:ihl + 14])
    payload = len(packet) - ihl - (off_flags >> 12) * 4
    return json.dumps({"t": round(now, 4), "dir": direction, "len": len(packet), "sport": sport,
                       "dport": dport, "seq": seq, "ack": ack, "flags": off_flags & 0x3F,
                       "payload": payload,
                       "arrive": None if arrive is None else round(arrive, 4)}) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shaper", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=RATE_BPS, help="bit/s, both directions")
    parser.add_argument("--delay", type=float, default=DELAY_S, help="one-way delay (s)")
    parser.add_argument("--loss", type=float, default=LOSS)
    parser.add_argument("--queue", type=int, default=QUEUE_PACKETS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--stats", type=Path, default=None)
    parser.add_argument("--trace", type=Path, default=None,
                        help="write every packet offered to the link here (JSON lines)")
    args = parser.parse_args(argv)
    fd = open_tun()
    print("ready", flush=True)
    link = Link(args.rate, args.delay, args.loss, args.queue, args.seed)
    signal.signal(signal.SIGUSR1, lambda *_: link.reseed())
    try:
        if args.trace is None:
            run(fd, link, args.stats)
        else:
            with args.trace.open("a", buffering=1) as trace:
                run(fd, link, args.stats, trace)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
