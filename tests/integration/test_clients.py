"""Real Matrix clients (matrix-nio and matrix-js-sdk) against a running homeserver.

Each story: two users chat in a room (100 messages, edit, redaction, reaction, thread reply,
typing, receipts, back-pagination), the server is restarted on the same data, then new
logins check that everything survived and a user leaves.

Needs the `homeserver` fixture (from tests/conftest.py): `.base_url` and `async restart()`.
The JS story needs node and npm; its dependencies are installed once per session with `npm ci`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration import nio_scenario

JS_DIR = Path(__file__).parent / "js"
SCENARIO_TIMEOUT_S = 240


def _server_log_tail(homeserver: Any, n: int = 60) -> str:
    """The server's log tail when the fixture offers one (for failure messages)."""
    log = getattr(homeserver, "log", None)
    try:
        text = log() if callable(log) else (log or "")
    except Exception:  # noqa: BLE001 - best effort only
        return ""
    lines = str(text).splitlines()[-n:]
    return "\n--- server log (tail) ---\n" + "\n".join(lines) if lines else ""


async def test_nio_story(homeserver: Any) -> None:
    t0 = time.monotonic()
    try:
        state = await asyncio.wait_for(nio_scenario.run_chat(homeserver.base_url), SCENARIO_TIMEOUT_S)
    except AssertionError as e:
        pytest.fail(f"nio chat phase failed: {e}{_server_log_tail(homeserver)}")
    t_chat = time.monotonic() - t0

    await homeserver.restart()

    t1 = time.monotonic()
    try:
        await asyncio.wait_for(nio_scenario.run_verify(homeserver.base_url, state), SCENARIO_TIMEOUT_S)
    except AssertionError as e:
        pytest.fail(f"nio verify phase (after restart) failed: {e}{_server_log_tail(homeserver)}")
    print(f"nio story: chat {t_chat:.1f} s, verify {time.monotonic() - t1:.1f} s")


# ---------------------------------------------------------------- JS (matrix-js-sdk)
def _js_deps_ok() -> bool:
    """node_modules holds exactly the matrix-js-sdk version the lock file pins."""
    try:
        lock = json.loads((JS_DIR / "package-lock.json").read_text())
        want = lock["packages"]["node_modules/matrix-js-sdk"]["version"]
        have = json.loads((JS_DIR / "node_modules/matrix-js-sdk/package.json").read_text())["version"]
    except (OSError, KeyError, ValueError):
        return False
    return bool(want == have)


@pytest.fixture(scope="session")
def js_scenario() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed for the matrix-js-sdk scenario but are not on PATH")
    if not _js_deps_ok():
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            pytest.fail(f"npm ci in {JS_DIR} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        if not _js_deps_ok():
            pytest.fail("npm ci finished but node_modules/matrix-js-sdk does not match package-lock.json")
    return JS_DIR / "scenario.mjs"


async def _run_node(script: Path, base_url: str, phase: str, stdin: str = "") -> tuple[int, str, str]:
    env = dict(os.environ)
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), base_url, phase,
        cwd=script.parent, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), SCENARIO_TIMEOUT_S + 30)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        return -9, out.decode(errors="replace"), err.decode(errors="replace") + "\n(killed: timed out)"
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _important(stderr: str) -> str:
    """Drop the SDK's chatter so the scenario's own progress and failure lines stand out."""
    keep = [ln for ln in stderr.splitlines() if "MatrixRTCSessionManager" not in ln]
    return "\n".join(keep[-80:])


async def test_js_sdk_story(homeserver: Any, js_scenario: Path) -> None:
    t0 = time.monotonic()
    rc, out, err = await _run_node(js_scenario, homeserver.base_url, "chat")
    assert rc == 0, f"js chat phase exited {rc}:\n{_important(err)}{_server_log_tail(homeserver)}"
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, f"js chat phase should print exactly one JSON line, got:\n{out}"
    state = json.loads(lines[0])
    assert state["room_id"].startswith("!") and len(state["messages"]) == 100, state
    t_chat = time.monotonic() - t0

    await homeserver.restart()

    t1 = time.monotonic()
    rc, out, err = await _run_node(js_scenario, homeserver.base_url, "verify", stdin=lines[0] + "\n")
    assert rc == 0, f"js verify phase (after restart) exited {rc}:\n{_important(err)}{_server_log_tail(homeserver)}"
    print(f"js story: chat {t_chat:.1f} s, verify {time.monotonic() - t1:.1f} s")
