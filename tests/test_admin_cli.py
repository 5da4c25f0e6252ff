"""`veche admin`: the operator's shell commands for users and rooms, on the config's
database. Those that send events or end sessions refuse while the server runs; with it
stopped they do what the admin API does, as the restarted server shows."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.admin_helpers import SYNAPSE_ADMIN, login
from tests.conftest import Client
from tests.sync_helpers import send


def veche(srv: Any, *args: str, stdin: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "veche", "admin", *args],
                          env={**srv.env, **(env or {})}, input=stdin, capture_output=True,
                          text=True, timeout=120)


async def test_admin_commands(make_server: Any, http: aiohttp.ClientSession) -> None:
    srv = make_server({}, dev=True)
    client = lambda: Client(http, srv.base_url)  # noqa: E731
    tag = f"cli{secrets.token_hex(3)}"
    alice = await client().register(f"{tag}alice")
    bob = await client().register(f"{tag}bob")
    carol = await client().register(f"{tag}carol")
    room = (await alice.post("createRoom", {"preset": "public_chat", "name": f"{tag} room"}))[1][
        "room_id"]
    await bob.post(f"join/{quote(room)}", {})
    await send(alice, room, "hello")

    # Reading works while the server runs.
    out = veche(srv, "list-users", "--name", tag)
    assert out.returncode == 0, out.stderr
    assert [line.split("\t")[0] for line in out.stdout.splitlines()] == [
        alice.user_id, bob.user_id, carol.user_id]
    out = veche(srv, "list-rooms", "--search", tag)
    assert out.stdout.splitlines() == [f"{room}\t2\t{tag} room"]
    out = veche(srv, "set-admin", f"{tag}carol")
    assert out.returncode == 0, out.stderr
    assert (await carol.get(f"{SYNAPSE_ADMIN}/v2/users"))[0] == 200
    assert veche(srv, "set-admin", "--revoke", carol.user_id).returncode == 0
    assert (await carol.get(f"{SYNAPSE_ADMIN}/v2/users"))[0] == 403

    # Changing rooms and sessions waits for the server to stop.
    running = {"VECHE_LISTEN__PORT": str(srv.port)}
    out = veche(srv, "deactivate-user", bob.user_id, env=running)
    assert out.returncode != 0 and "running" in out.stderr
    assert (await bob.get("account/whoami"))[0] == 200

    await asyncio.to_thread(srv.stop)
    for args, stdin in ((("deactivate-user", bob.user_id), None),
                        (("reset-password", f"{tag}carol"), "cli-password-1\n"),
                        (("send-notice", alice.user_id, "Back in five"), None),
                        (("delete-room", room), None)):
        out = veche(srv, *args, stdin=stdin, env=running)
        assert out.returncode == 0, (args, out.stderr)
    assert "1 members removed" in out.stdout  # bob had left already, deactivated
    out = veche(srv, "deactivate-user", f"@nobody:{srv.server_name}", env=running)
    assert out.returncode != 0 and "not found" in out.stderr.lower()
    await asyncio.to_thread(srv.start)

    assert (await bob.get("account/whoami"))[1]["errcode"] == "M_UNKNOWN_TOKEN"
    assert (await carol.get("account/whoami"))[1]["errcode"] == "M_UNKNOWN_TOKEN"
    assert (await login(client(), f"{tag}carol", "cli-password-1"))[0] == 200
    status, body = await alice.get(f"rooms/{quote(room)}/messages", params={"dir": "b"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert (await alice.post(f"join/{quote(room)}", {}))[0] == 403
    status, invites = await alice.get("sync")
    notice_rooms = list(invites["rooms"].get("invite", {}))
    assert len(notice_rooms) == 1
    assert (await alice.post(f"join/{quote(notice_rooms[0])}", {}))[0] == 200
    status, msgs = await alice.get(f"rooms/{quote(notice_rooms[0])}/messages",
                                   params={"dir": "b"})
    assert "Back in five" in [e["content"].get("body") for e in msgs["chunk"]]
    out = veche(srv, "list-users", "--name", tag, "--deactivated")
    assert f"{bob.user_id}\tdeactivated" in out.stdout
