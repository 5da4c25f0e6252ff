"""matrix-js-sdk on what community users of Element touch beyond chat: a space's hierarchy
(order, suggested rooms, pages), search with context, pushers, TURN credentials for calls,
and an OpenID token that /openid/userinfo vouches for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.test_clients import _important, _run_node, _server_log_tail, js_scenario

__all__ = ["js_scenario"]  # the npm-installing fixture, shared with test_clients


async def test_js_sdk_spaces_search_push_calls_widgets(homeserver: Any, js_scenario: Path) -> None:
    script = js_scenario.parent / "community.mjs"
    rc, out, err = await _run_node(script, homeserver.base_url, "community")
    assert rc == 0, f"js community story exited {rc}:\n{_important(err)}{_server_log_tail(homeserver)}"
    result = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    assert result == {"ok": True, "rooms": 4, "around": 3}, result
