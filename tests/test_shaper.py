"""The shaped link's model (bench/shaper.py): rate, delay, seeded loss, queue, reflection."""

from __future__ import annotations

import struct

import pytest
from bench.shaper import CLIENT_ALIAS, LOCAL, SERVER_ALIAS, Link, _checksum, _trace_line, reflect


def test_one_packet_takes_its_serialisation_time_plus_the_delay() -> None:
    link = Link(rate_bps=64_000, delay_s=0.5, loss=0.0)
    assert link.offer(10.0, 1000) == pytest.approx(10.0 + 1000 * 8 / 64_000 + 0.5)


def test_back_to_back_packets_share_the_rate() -> None:
    link = Link(rate_bps=64_000, delay_s=0.5, loss=0.0)
    arrivals = [link.offer(0.0, 800) for _ in range(10)]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]  # type: ignore[operator]
    assert gaps == pytest.approx([0.1] * 9)  # 800 bytes at 64 kbit/s
    # The link idles when nothing is offered: a packet much later waits for nobody.
    assert link.offer(100.0, 800) == pytest.approx(100.0 + 0.1 + 0.5)


def test_loss_is_seeded_and_about_as_asked() -> None:
    def losses(seed: int) -> list[bool]:
        link = Link(loss=0.03, seed=seed, rate_bps=1e12, delay_s=0)
        return [link.offer(i * 1.0, 100) is None for i in range(20_000)]

    first = losses(14)
    assert first == losses(14)  # each server sees the same sequence
    assert first != losses(15)
    assert 0.025 < sum(first) / len(first) < 0.035


def test_the_loss_sequence_does_not_depend_on_sizes_or_timing() -> None:
    a = Link(loss=0.03, seed=1)
    b = Link(loss=0.03, seed=1)
    lost_a = [a.offer(i * 0.01, 1500) is None for i in range(500)]
    lost_b = [b.offer(i * 5.0, 60) is None for i in range(500)]
    assert lost_a == lost_b


def test_a_full_queue_drops() -> None:
    link = Link(rate_bps=8_000, delay_s=0.0, loss=0.0, queue_packets=5)
    results = [link.offer(0.0, 1000) for _ in range(8)]  # 1 s each to serialise
    assert [r is None for r in results] == [False] * 5 + [True] * 3
    assert link.overflowed == 3
    assert link.offer(2.5, 1000) is not None  # two have left by then


def _ipv4_tcp(src: str, dst: str, payload: bytes = b"hello") -> bytes:
    import ipaddress

    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 8008, 1, 0, 5 << 4, 0x18, 65535, 0, 0) + payload)
    tcp[16:18] = struct.pack("!H", _checksum(s + d + struct.pack("!BBH", 0, 6, len(tcp)) + bytes(tcp)))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, s, d))
    ip[10:12] = struct.pack("!H", _checksum(bytes(ip)))
    return bytes(ip + tcp)


def _valid(packet: bytes) -> bool:
    tcp = packet[20:]
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    return _checksum(packet[:20]) == 0 and _checksum(pseudo + tcp) == 0


def test_reflection_rewrites_addresses_and_checksums() -> None:
    import ipaddress

    up = reflect(_ipv4_tcp(LOCAL, SERVER_ALIAS))
    assert up is not None and _valid(up)
    assert ipaddress.IPv4Address(up[12:16]) == ipaddress.IPv4Address(CLIENT_ALIAS)
    assert ipaddress.IPv4Address(up[16:20]) == ipaddress.IPv4Address(LOCAL)
    assert up[20:22] == struct.pack("!H", 40000) and up.endswith(b"hello")
    down = reflect(_ipv4_tcp(LOCAL, CLIENT_ALIAS, b"odd"))
    assert down is not None and _valid(down)
    assert ipaddress.IPv4Address(down[12:16]) == ipaddress.IPv4Address(SERVER_ALIAS)
    # Anything else is not carried.
    assert reflect(_ipv4_tcp("10.9.9.9", SERVER_ALIAS)) is None
    assert reflect(b"\x60" + b"\0" * 59) is None  # IPv6


def test_reseeding_starts_the_loss_sequence_again() -> None:
    link = Link(loss=0.3, seed=3, rate_bps=1e12, delay_s=0)
    first = [link.offer(float(i), 100) is None for i in range(200)]
    link.reseed()
    assert [link.offer(1000.0 + i, 100) is None for i in range(200)] == first


def test_a_traced_packet_reads_as_its_tcp_header_says() -> None:
    import json

    packet = _ipv4_tcp(LOCAL, SERVER_ALIAS, b"GET / HTTP/1.1")
    line = json.loads(_trace_line(5.0, "up", packet, 5.7))
    assert line == {"t": 5.0, "dir": "up", "len": len(packet), "sport": 40000, "dport": 8008,
                    "seq": 1, "ack": 0, "flags": 0x18, "payload": 14, "arrive": 5.7}
    assert json.loads(_trace_line(5.0, "down", packet, None))["arrive"] is None  # lost
