"""`python -m bench.scaleout` end to end at tiny size: 1 and 2 processes on PostgreSQL and
NATS behind HAProxy, every reader gets every message in order, and the table has each
component's CPU and the cycle's ratios. How fast is for the benchmark to say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import POSTGRES_ADMIN_URL
from tests.scaleout.conftest import BUS_URL, ROOT, _haproxy, _require_nats, _require_postgres


def test_bench_scaleout_quick(tmp_path: Path) -> None:
    _require_postgres()
    _require_nats()
    _haproxy()
    out, raw = tmp_path / "scaleout.md", tmp_path / "scaleout.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scaleout", "--kinds", "1,2", "--cycles", "1",
         "--rooms", "4", "--messages", "5", "--warmup", "1", "--out", str(out),
         "--json", str(raw)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "VECHE_BENCH_POSTGRES": POSTGRES_ADMIN_URL, "VECHE_BENCH_NATS": BUS_URL},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    for label in ("| messages/s |", "| Veche CPU-s per 1,000 messages (all processes) |",
                  "| PostgreSQL backends CPU-s per 1,000 |", "| HAProxy CPU-s per 1,000 |",
                  "| load generator CPU-s per 1,000 |", "2 processes / 1 process",
                  "- median: throughput"):
        assert label in table, label
    runs = json.loads(raw.read_text())
    one, two = runs["1"][0], runs["2"][0]
    assert one["messages"] == two["messages"] == 4 * 2 * 5
    # Every process and the database's backends did work that was counted.
    assert one["w1_cpu_s_per_1000"] > 0 and "w2_cpu_s_per_1000" not in one
    assert two["w1_cpu_s_per_1000"] > 0 and two["w2_cpu_s_per_1000"] > 0
    assert one["postgres_cpu_s_per_1000"] > 0 and two["postgres_cpu_s_per_1000"] > 0
