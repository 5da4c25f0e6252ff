"""The benchmark runner works end to end (tiny sizes, Veche only): it starts the server,
runs every scenario and writes the table. How fast is for `python -m bench` to say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runner_quick(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--servers", "veche", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    for label in ("server CPU-s per 1,000 messages", "send-to-sync p99 (ms)",
                  "RSS idle after start (MB)", "many rooms: initial /sync (s)",
                  "long-polls held and woken", "/messages back through history (s)",
                  "/sync wake-up p99, searching (ms)", "server CPU-ms per message, big room"):
        assert label in table, label
    held = next(line for line in table.splitlines() if "long-polls held" in line)
    assert held.split("|")[2].strip() == "40"  # every quick long-poll was woken
    assert "Veche holds 40 long-polls and wakes them all: met" in table


def test_bench_federation_quick(tmp_path: Path) -> None:
    """The federation scenario end to end at tiny size: a Veche and a Synapse federate over
    TLS, messages go each way, and both receivers' CPU lands in the table with the ratio."""
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--servers", "veche,synapse",
         "--scenarios", "federation", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert "## Federation" in table and "Error" not in table, table
    rows = [line.split("|") for line in table.splitlines()
            if line.startswith("| receiving server CPU-s per 1,000 PDUs")]
    assert len(rows) == 2, table  # paced, then as fast as each sender goes
    for row in rows:
        veche, synapse = float(row[2].replace(",", "")), float(row[3].replace(",", ""))
        assert veche > 0 and synapse > 0, row
    # The per-server tables were not asked for: no server ran alone.
    assert "| server CPU-s per 1,000 messages |" not in table


def test_bench_federation_needs_both_servers(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--servers", "veche", "--scenarios", "federation",
         "--out", str(tmp_path / "RESULTS.md")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "needs both servers" in proc.stderr, proc.stderr
    assert not (tmp_path / "RESULTS.md").exists()


def test_bench_veche_on_postgres_quick(tmp_path: Path) -> None:
    """`--servers veche,veche-postgres --cycles 2`: the same Veche on SQLite and on a fresh
    PostgreSQL database, alternating, with the PostgreSQL / SQLite ratio of each cycle."""
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--servers", "veche,veche-postgres",
         "--scenarios", "chat", "--cycles", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    head = next(line for line in table.splitlines() if line.startswith("| metric |"))
    cells = [c.strip() for c in head.split("|")[2:5]]
    assert cells[0].startswith("Veche ") and cells[1].startswith("Veche on PostgreSQL "), head
    assert cells[2] == "PostgreSQL / SQLite", head
    row = next(line for line in table.splitlines()
               if line.startswith("| server CPU-s per 1,000 messages |"))
    sqlite, postgres, ratio = (float(c.replace(",", "")) for c in row.split("|")[2:5])
    assert sqlite > 0 and postgres > 0 and ratio > 0, row
    cycles = [line for line in table.splitlines() if line.startswith("- cycle ")]
    assert len(cycles) == 2, table
    assert "- median ratio" in table


def test_bench_shaped_link_quick(tmp_path: Path) -> None:
    """The shaped-link scenario at tiny size: through the user-space shaper in a namespace
    of its own, or skipped with a line saying why where namespaces or TUN are unavailable."""
    from bench import netns

    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--servers", "veche",
         "--scenarios", "shaped_link", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    reason = netns.unavailable()
    if reason is not None:
        assert f"shaped_link skipped: {reason}" in proc.stderr
        assert "skipped" in table
        return
    row = next(line for line in table.splitlines()
               if line.startswith("| shaped link: initial /sync, Element's filter (s)"))
    # 500 ms each way: the request and its answer take a round trip at least.
    assert float(row.split("|")[2].replace(",", "")) > 1.0, row
    # As a browser asks, the same answer comes in brotli: fewer bytes than gzip's.
    gzip_kib, br_kib = (float(next(line for line in table.splitlines() if line.startswith(
        f"| shaped link: {label} (KiB received)")).split("|")[2])
        for label in ("initial /sync", "the same"))
    assert br_kib < gzip_kib
    lost = next(line for line in table.splitlines() if line.startswith("| shaped link: live messages lost"))
    assert lost.split("|")[2].strip() == "0", lost
