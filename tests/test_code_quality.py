"""The code stays ruff-clean and the protocol core passes mypy --strict."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_core_is_strictly_typed() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_client_address_has_one_reader() -> None:
    # Behind a reverse proxy the socket's peer is the proxy; only client_ip() knows better.
    readers = [str(p.relative_to(ROOT)) for p in (ROOT / "src").rglob("*.py")
               if "request.remote" in p.read_text() and p.name != "base.py"]
    assert not readers, readers


def test_http_handlers_reach_storage_only_through_services() -> None:
    # The HTTP layer parses, calls a service and answers; the SQL stays behind the services.
    importers = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "src/veche/http").glob("*.py")
                       if re.search(r"^\s*(from|import) veche\.storage", p.read_text(), re.M))
    assert not importers, importers
