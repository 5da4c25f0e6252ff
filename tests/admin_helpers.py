"""A server admin for tests, made with the CLI as an operator would."""

from __future__ import annotations

import secrets
import subprocess
import sys
from typing import Any


async def make_admin(homeserver: Any, make_client: Any) -> Any:
    localpart = f"admin{secrets.token_hex(4)}"
    password = "admin-password-1"
    proc = subprocess.run([sys.executable, "-m", "veche", "register-user", localpart,
                           "--password", password, "--admin"], env=homeserver.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    admin = make_client()
    status, body = await admin.post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
        "password": password}, token=False)
    assert status == 200, body
    admin.access_token, admin.user_id, admin.device_id = (
        body["access_token"], body["user_id"], body["device_id"])
    return admin


SYNAPSE_ADMIN = "/_synapse/admin"


async def assert_admin_only(client: Any, method: str, path: str, body: Any = None) -> None:
    """A user who is no server admin gets 403 M_FORBIDDEN, and no token 401."""
    status, out = await client.request(method, path, body)
    assert (status, out.get("errcode")) == (403, "M_FORBIDDEN"), (method, path, status, out)
    status, out = await client.request(method, path, body, token=False)
    assert (status, out.get("errcode")) == (401, "M_MISSING_TOKEN"), (method, path, status, out)


async def login(client: Any, localpart: str, password: str) -> tuple[int, Any]:
    return await client.post("login", {  # type: ignore[no-any-return]
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
        "password": password}, token=False)
