"""The client's address behind a reverse proxy (`listen.trusted_proxies`): login and
registration limits, whois and last_seen_ip see the forwarded address; a stranger's failed
logins limit the stranger, not the account's owner elsewhere; untrusted X-Forwarded-For
headers are ignored."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import Client, ServerProcess

OPEN = {"VECHE_REGISTRATION__ENABLED": "true"}
BEHIND_PROXY = {**OPEN, "VECHE_LISTEN__TRUSTED_PROXIES": '["127.0.0.1/32"]'}
STRANGER, OWNER, NEIGHBOUR = "203.0.113.9", "198.51.100.30", "198.51.100.20"


async def login(client: Client, user_id: str, password: str,
                forwarded_for: str | None = None) -> tuple[int, Any]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    return await client.post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
        "password": password}, token=False, headers=headers)


async def test_forwarded_addresses_are_limited_apart(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server(BEHIND_PROXY)
    async with aiohttp.ClientSession() as http:
        client = Client(http, srv.base_url)
        alice = await Client(http, srv.base_url).register(password="alice-password")
        bob = await Client(http, srv.base_url).register(password="bob-password")
        statuses = [(await login(client, alice.user_id, "guess", STRANGER))[0]
                    for _ in range(15)]
        assert 403 in statuses and statuses[-1] == 429, statuses
        # The stranger's address stays limited, even with the right password ...
        status, err = await login(client, alice.user_id, "alice-password", STRANGER)
        assert (status, err["errcode"]) == (429, "M_LIMIT_EXCEEDED")
        # ... also when it puts a made-up address before the proxy's entry.
        status, _ = await login(client, alice.user_id, "alice-password", f"{OWNER}, {STRANGER}")
        assert status == 429
        # Others behind the same proxy log in, and so does alice from her own address.
        assert (await login(client, bob.user_id, "bob-password", NEIGHBOUR))[0] == 200
        status, body = await login(client, alice.user_id, "alice-password", OWNER)
        assert status == 200, body
        alice.access_token, device = body["access_token"], body["device_id"]
        status, whois = await alice.get(f"admin/whois/{quote(alice.user_id)}")
        assert status == 200
        (session,) = whois["devices"][device]["sessions"]
        assert session["connections"][0]["ip"] == OWNER


async def test_account_failures_have_a_cap_over_all_addresses(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server({**BEHIND_PROXY, "VECHE_RATE_LIMITS__LOGIN_FAILURES_ACCOUNT":
                       json.dumps({"per_second": 0.001, "burst": 6})})
    async with aiohttp.ClientSession() as http:
        client = Client(http, srv.base_url)
        alice = await Client(http, srv.base_url).register(password="alice-password")
        # Guessing from many addresses still runs into the account's own cap.
        statuses = [(await login(client, alice.user_id, "guess", f"203.0.113.{i}"))[0]
                    for i in range(1, 9)]
        assert statuses[:6] == [403] * 6 and statuses[6:] == [429, 429], statuses


async def test_forwarded_for_is_ignored_without_trusted_proxies(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server(OPEN)
    async with aiohttp.ClientSession() as http:
        client = Client(http, srv.base_url)
        alice = await Client(http, srv.base_url).register(password="alice-password")
        statuses = [(await login(client, alice.user_id, "guess", f"203.0.113.{i}"))[0]
                    for i in range(1, 9)]
        assert 403 in statuses and statuses[-1] == 429, statuses
        status, body = await login(Client(http, srv.base_url), alice.user_id, "alice-password",
                                   "198.51.100.77")
        assert status == 429
        status, whois = await alice.get(f"admin/whois/{quote(alice.user_id)}")
        (session,) = whois["devices"][alice.device_id]["sessions"]
        assert session["connections"][0]["ip"] == "127.0.0.1"


async def test_registration_limit_is_per_forwarded_address(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server(BEHIND_PROXY)
    async with aiohttp.ClientSession() as http:
        client = Client(http, srv.base_url)

        async def register(address: str) -> int:
            status, _ = await client.post("register", {"password": "pw-1234567"}, token=False,
                                          headers={"X-Forwarded-For": address})
            return status

        statuses = [await register(STRANGER) for _ in range(8)]
        assert statuses[-1] == 429, statuses
        assert await register(OWNER) == 401  # the UIA challenge: not limited
