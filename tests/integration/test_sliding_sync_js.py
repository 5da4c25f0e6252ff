"""matrix-js-sdk's SlidingSync (MSC4186) drives a client against Veche: the room list, a
room's timeline, a message moving its room to the top, and an end-to-end encrypted message
decrypted through the `to_device` and `e2ee` extensions (tests/integration/js/sliding_sync.mjs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.test_clients import _important, _run_node, _server_log_tail, js_scenario
from tests.integration.test_e2ee import assert_plaintext_not_stored

__all__ = ["js_scenario"]  # the session fixture that runs `npm ci` once


async def test_js_sdk_sliding_sync_story(homeserver: Any, js_scenario: Path) -> None:
    script = js_scenario.parent / "sliding_sync.mjs"
    rc, out, err = await _run_node(script, homeserver.base_url, "story")
    own = "\n".join(ln for ln in err.splitlines() if ln.startswith(("[ss", "FAIL")))
    assert rc == 0, f"story exited {rc}:\n{own}\n--- sdk ---\n{_important(err)[-3000:]}" \
        f"{_server_log_tail(homeserver)}"
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, out[-2000:]
    result = json.loads(lines[0])
    assert result["order"] == 3 and result["responses"] >= 3
    # The encrypted messages went through the server as ciphertext only.
    assert_plaintext_not_stored(homeserver, result["secrets"], result["plain"])
