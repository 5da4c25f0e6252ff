"""Rate limits on logins and registrations hold for the cluster as a whole: the balancer
spreads requests without an access token over the processes, and a budget per process would
multiply a password guesser's budget by their number."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.scaleout.conftest import Cluster, started_cluster

ATTEMPTS = 9  # three on each process


@pytest.fixture(scope="module")
def limited_cluster() -> Iterator[Cluster]:
    yield from started_cluster({
        "VECHE_REGISTRATION__ENABLED": "true",
        # Barely refilling during the test: what is spent stays spent.
        "VECHE_RATE_LIMITS__REGISTRATION": json.dumps({"per_second": 0.001, "burst": 3}),
        "VECHE_RATE_LIMITS__LOGIN": json.dumps({"per_second": 0.001, "burst": 20}),
    }, dev=False)


async def _post(http: aiohttp.ClientSession, base_url: str, path: str, body: Any,
                address: str) -> tuple[int, Any]:
    # The processes trust the loopback balancer's X-Forwarded-For: each test is one address.
    async with http.post(f"{base_url}/_matrix/client/v3/{path}", json=body,
                         headers={"X-Forwarded-For": address}) as r:
        return r.status, await r.json()


async def test_registrations_from_one_address_share_one_budget(
        limited_cluster: Cluster, http: aiohttp.ClientSession) -> None:
    statuses = []
    for i in range(ATTEMPTS):
        worker = limited_cluster.workers[i % 3]
        status, body = await _post(http, worker.base_url, "register", {
            "username": f"r{secrets.token_hex(4)}", "password": "correct horse battery",
            "auth": {"type": "m.login.dummy"}}, "10.9.0.1")
        statuses.append(status)
        if status == 429:
            assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0
    assert sum(s != 429 for s in statuses) == 3, statuses
    assert statuses[3:] == [429] * (ATTEMPTS - 3), statuses


async def test_password_guesses_share_one_budget(
        limited_cluster: Cluster, http: aiohttp.ClientSession) -> None:
    w1 = limited_cluster.workers[0]
    status, body = await _post(http, w1.base_url, "register", {
        "username": "owner", "password": "the owner's password",
        "auth": {"type": "m.login.dummy"}}, "10.9.0.2")
    assert status == 200, body
    guesses = []
    for i in range(ATTEMPTS):
        worker = limited_cluster.workers[i % 3]
        status, body = await _post(http, worker.base_url, "login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "owner"},
            "password": f"guess {i}"}, "10.9.0.3")
        guesses.append((status, body.get("errcode")))
    # login_failures: five failed guesses at one account from one address, in the whole
    # cluster; then even the right password waits from there.
    assert guesses[:5] == [(403, "M_FORBIDDEN")] * 5, guesses
    assert guesses[5:] == [(429, "M_LIMIT_EXCEEDED")] * (ATTEMPTS - 5), guesses
    status, _ = await _post(http, limited_cluster.workers[2].base_url, "login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "owner"},
        "password": "the owner's password"}, "10.9.0.3")
    assert status == 429
    # The owner, elsewhere, is not locked out.
    status, body = await _post(http, limited_cluster.workers[1].base_url, "login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "owner"},
        "password": "the owner's password"}, "10.9.0.4")
    assert status == 200, body
