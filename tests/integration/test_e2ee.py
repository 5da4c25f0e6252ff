"""End-to-end encryption with real clients: matrix-js-sdk (Rust crypto) and matrix-nio.

Each story sends messages whose plaintexts must never reach the server's database, and a
control message in an unencrypted room that must (so the database search can fail).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.integration import nio_e2ee
from tests.integration.test_clients import _important, _run_node, _server_log_tail, js_scenario

__all__ = ["js_scenario"]  # the session fixture that runs `npm ci` once


def _e2ee_script(js_scenario: Path) -> Path:
    return js_scenario.parent / "e2ee.mjs"


async def _js_story(homeserver: Any, js_scenario: Path, phase: str) -> dict[str, list[str]]:
    rc, out, err = await _run_node(_e2ee_script(js_scenario), homeserver.base_url, phase)
    assert rc == 0, f"js {phase} story exited {rc}:\n{_e2ee_lines(err)}{_server_log_tail(homeserver)}"
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, f"js {phase} story should print one JSON line, got:\n{out[-2000:]}"
    return json.loads(lines[0])  # type: ignore[no-any-return]


def _e2ee_lines(stderr: str) -> str:
    """The story's own progress and failure lines, then the tail of the SDK's chatter."""
    own = [ln for ln in stderr.splitlines() if ln.startswith(("[e2ee", "FAIL"))]
    return "\n".join(own) + "\n--- sdk (tail) ---\n" + _important(stderr)[-4000:]


def _database_text(homeserver: Any) -> bytes:
    """Everything the server has stored: the SQLite files (WAL included) or every PostgreSQL row."""
    if homeserver.backend == "sqlite":
        path = Path(homeserver.db_url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal"))
                        if p.exists())
    import psycopg

    chunks: list[bytes] = []
    with psycopg.connect(homeserver.db_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
        for table in tables:
            row = conn.execute(f'SELECT string_agg(t::text, chr(10)) FROM "{table}" t').fetchone()
            if row and row[0]:
                chunks.append(row[0].encode())
    return b"\n".join(chunks)


def assert_plaintext_not_stored(homeserver: Any, secrets: list[str], plain: list[str]) -> None:
    assert secrets and plain, "a story must send encrypted messages and a control"
    stored = _database_text(homeserver)
    for text in plain:
        assert text.encode() in stored, f"control {text!r} (unencrypted room) not found: the search is blind"
    leaked = [s for s in secrets if s.encode() in stored]
    assert not leaked, f"plaintext of encrypted messages found in the database: {leaked}"


async def test_js_megolm_two_users_and_a_later_device(homeserver: Any, js_scenario: Path) -> None:
    result = await _js_story(homeserver, js_scenario, "megolm")
    assert len(result["secrets"]) == 5
    assert_plaintext_not_stored(homeserver, result["secrets"], result["plain"])


async def test_js_cross_signing_secret_storage_and_sas(homeserver: Any, js_scenario: Path) -> None:
    await _js_story(homeserver, js_scenario, "verify")


async def test_js_key_backup_restored_by_new_device(homeserver: Any, js_scenario: Path) -> None:
    result = await _js_story(homeserver, js_scenario, "backup")
    assert_plaintext_not_stored(homeserver, result["secrets"], result["plain"])


async def test_js_dehydrated_device_keeps_keys_for_the_next_device(homeserver: Any,
                                                                   js_scenario: Path) -> None:
    result = await _js_story(homeserver, js_scenario, "dehydrate")
    assert_plaintext_not_stored(homeserver, result["secrets"], result["plain"])


async def test_nio_and_js_sdk_in_one_encrypted_room(homeserver: Any, js_scenario: Path) -> None:
    script = _e2ee_script(js_scenario)

    async def run_js(state: dict[str, Any]) -> tuple[int, str, str]:
        return await _run_node(script, homeserver.base_url, "interop", stdin=json.dumps(state) + "\n")

    with tempfile.TemporaryDirectory(prefix="nio-e2ee-") as store:
        try:
            secrets, plain = await nio_e2ee.run_interop(homeserver.base_url, store, run_js)
        except AssertionError as e:
            pytest.fail(f"nio/js interop failed: {e}{_server_log_tail(homeserver)}")
    assert_plaintext_not_stored(homeserver, secrets, plain)
