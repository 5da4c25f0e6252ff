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
