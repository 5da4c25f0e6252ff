"""Dehydrated devices (MSC3814): a user parks one device on the server; it shows in key
queries and receives to-device messages, which a new device of the user fetches in batches
and thereby deletes; replacing or deleting it removes the old one with its keys and inbox."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from tests.e2e_helpers import device_keys, device_signing_key, one_time_keys

PREFIX = "/_matrix/client/unstable/org.matrix.msc3814.v1"
_txn = itertools.count()


def dehydrated(client: Any, device_id: str, **extra: Any) -> dict[str, Any]:
    fake = SimpleNamespace(user_id=client.user_id, device_id=device_id)
    key = device_signing_key(device_id)
    return {"device_id": device_id, "device_data": {"algorithm": "m.dehydration.v1", "x": device_id},
            "initial_device_display_name": "Dehydrated device",
            "device_keys": {**device_keys(fake, key), "dehydrated": True}, **extra}


async def query(client: Any, user_id: str) -> dict[str, Any]:
    status, body = await client.post("keys/query", {"device_keys": {user_id: []}})
    assert status == 200, body
    return body["device_keys"].get(user_id, {})  # type: ignore[no-any-return]


async def events(client: Any, device_id: str, next_batch: str | None = None) -> tuple[int, Any]:
    return await client.post(f"{PREFIX}/dehydrated_device/{device_id}/events",
                             {"next_batch": next_batch} if next_batch else {})


async def test_dehydrated_device_lifecycle(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    status, body = await alice.get(f"{PREFIX}/dehydrated_device")
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

    put = dehydrated(alice, "DEHYD1")
    put["one_time_keys"] = one_time_keys(device_signing_key("DEHYD1"), alice.user_id, 3)
    assert await alice.put(f"{PREFIX}/dehydrated_device", put) == (200, {"device_id": "DEHYD1"})
    assert await alice.get(f"{PREFIX}/dehydrated_device") == (
        200, {"device_id": "DEHYD1", "device_data": put["device_data"]})
    assert (await query(bob, alice.user_id))["DEHYD1"]["dehydrated"] is True
    status, claimed = await bob.post("keys/claim", {"one_time_keys": {alice.user_id: {"DEHYD1": "signed_curve25519"}}})
    assert claimed["one_time_keys"][alice.user_id]["DEHYD1"]

    # Room keys sent to all of alice's devices reach the dehydrated one.
    for n in range(3):
        assert (await bob.put(f"sendToDevice/m.room_key/d{next(_txn)}",
                              {"messages": {alice.user_id: {"*": {"n": n}}}}))[0] == 200
    status, first = await events(alice, "DEHYD1")
    assert status == 200, first
    assert [(e["type"], e["sender"], e["content"]["n"]) for e in first["events"]] == [
        ("m.room_key", bob.user_id, 0), ("m.room_key", bob.user_id, 1), ("m.room_key", bob.user_id, 2)]
    # Asking again without next_batch returns them again; with it, they are gone.
    assert len((await events(alice, "DEHYD1"))[1]["events"]) == 3
    status, rest = await events(alice, "DEHYD1", first["next_batch"])
    assert status == 200 and rest["events"] == []
    assert (await events(alice, "DEHYD1"))[1]["events"] == []
    status, body = await events(alice, "NOTMINE")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert (await events(bob, "DEHYD1"))[0] == 403

    # A new dehydrated device replaces the old one, keys and all.
    assert (await alice.put(f"{PREFIX}/dehydrated_device", dehydrated(alice, "DEHYD2")))[0] == 200
    devices = await query(bob, alice.user_id)
    assert "DEHYD2" in devices and "DEHYD1" not in devices
    # Bad keys, or the ID of a real device, are refused and leave the current one alone.
    bad = dehydrated(alice, "DEHYD3")
    bad["device_keys"]["user_id"] = bob.user_id
    for body in (bad, dehydrated(alice, alice.device_id), {"device_id": "X"},
                 {**dehydrated(alice, "DEHYD4"), "device_data": "pickle"}):
        assert (await alice.put(f"{PREFIX}/dehydrated_device", body))[0] == 400, body
    assert (await alice.get(f"{PREFIX}/dehydrated_device"))[1]["device_id"] == "DEHYD2"
    assert set(await query(bob, alice.user_id)) == {"DEHYD2"}  # alice's own device has no keys

    assert await alice.delete(f"{PREFIX}/dehydrated_device") == (200, {"device_id": "DEHYD2"})
    assert (await alice.get(f"{PREFIX}/dehydrated_device"))[0] == 404
    assert (await alice.delete(f"{PREFIX}/dehydrated_device"))[0] == 404
    assert "DEHYD2" not in await query(bob, alice.user_id)
