"""End-to-end encryption keys: upload, query, claim, cross-signing, signatures, device lists."""

from __future__ import annotations

import asyncio
import copy
from typing import Any
from urllib.parse import quote

from signedjson.sign import sign_json

from tests.e2e_helpers import (
    cross_signing_key,
    cs_key,
    device_keys,
    device_signing_key,
    fallback_key,
    login_again,
    one_time_keys,
    public_of,
    setup_cross_signing,
    upload,
)
from tests.sync_helpers import room_with, section, sync

PASSWORD = "correct horse battery"


async def test_upload_query_claim_round_trip(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    key = device_signing_key(alice.device_id)
    dkeys = device_keys(alice, key)
    otks = one_time_keys(key, alice.user_id, 3)
    status, body = await upload(alice, {"device_keys": dkeys, "one_time_keys": otks,
                                        "fallback_keys": fallback_key(key, alice.user_id)})
    assert status == 200, body
    assert body["one_time_key_counts"]["signed_curve25519"] == 3
    # Re-uploading the same keys is fine and changes nothing.
    status, body = await upload(alice, {"device_keys": dkeys, "one_time_keys": otks})
    assert status == 200 and body["one_time_key_counts"]["signed_curve25519"] == 3
    await alice.put(f"devices/{quote(alice.device_id)}", {"display_name": "Alice's phone"})

    status, body = await bob.post("keys/query", {"device_keys": {
        alice.user_id: [], "@nobody:elsewhere.example": [], f"@ghost:{alice.user_id.split(':', 1)[1]}": []}})
    assert status == 200, body
    got = body["device_keys"][alice.user_id][alice.device_id]
    assert got["keys"] == dkeys["keys"] and got["signatures"] == dkeys["signatures"]
    assert got["unsigned"]["device_display_name"] == "Alice's phone"
    assert "@nobody:elsewhere.example" not in body["device_keys"]
    # A server that cannot be reached is named in failures (and does not fail the query).
    assert set(body["failures"]) == {"elsewhere.example"}, body["failures"]
    # Per device: an unknown device is just absent.
    status, body = await bob.post("keys/query", {"device_keys": {alice.user_id: ["NOPE"]}})
    assert body["device_keys"][alice.user_id] == {}

    status, body = await bob.post("keys/claim", {"one_time_keys": {
        alice.user_id: {alice.device_id: "signed_curve25519"}}})
    assert status == 200, body
    (claimed_id, claimed), = body["one_time_keys"][alice.user_id][alice.device_id].items()
    assert claimed_id in otks and claimed == otks[claimed_id]
    assert (await sync(alice))["device_one_time_keys_count"]["signed_curve25519"] == 2


async def test_upload_rejects_bad_keys(make_client: Any) -> None:
    alice = await make_client().register()
    key = device_signing_key(alice.device_id)
    dkeys = device_keys(alice, key)
    # Keys for another device or user.
    wrong = dict(dkeys, device_id="OTHERDEVICE")
    status, body = await upload(alice, {"device_keys": wrong})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    wrong = dict(dkeys, user_id="@someone:else")
    status, body = await upload(alice, {"device_keys": wrong})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    assert (await upload(alice, {"device_keys": dkeys}))[0] == 200
    # A changed identity key for an existing device is refused, the old one kept.
    changed = device_keys(alice, device_signing_key(alice.device_id))
    status, body = await upload(alice, {"device_keys": changed})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    _, body = await alice.post("keys/query", {"device_keys": {alice.user_id: []}})
    assert body["device_keys"][alice.user_id][alice.device_id]["keys"] == dkeys["keys"]
    # A one-time key ID that exists with different content.
    otks = one_time_keys(key, alice.user_id, 2)
    assert (await upload(alice, {"one_time_keys": otks}))[0] == 200
    clash = one_time_keys(key, alice.user_id, 1)
    status, body = await upload(alice, {"one_time_keys": clash})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    # Too many in one upload.
    status, body = await upload(alice, {"one_time_keys": {
        f"signed_curve25519:x{i}": {"key": "a"} for i in range(1001)}})
    assert status == 413 and body["errcode"] == "M_TOO_LARGE"
    status, body = await upload(alice, {"one_time_keys": {"noalgorithm": "x"}})
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    _, body = await upload(alice, {})
    assert body["one_time_key_counts"]["signed_curve25519"] == 2


async def test_fallback_key_after_one_time_keys(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    key = device_signing_key(alice.device_id)
    fb = fallback_key(key, alice.user_id)
    await upload(alice, {"device_keys": device_keys(alice, key),
                         "one_time_keys": one_time_keys(key, alice.user_id, 1), "fallback_keys": fb})
    assert (await sync(alice))["device_unused_fallback_key_types"] == ["signed_curve25519"]
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    first = (await bob.post("keys/claim", claim))[1]["one_time_keys"][alice.user_id][alice.device_id]
    assert list(first) == ["signed_curve25519:k0"]
    for _ in range(2):  # the fallback key is handed out again and again
        got = (await bob.post("keys/claim", claim))[1]["one_time_keys"][alice.user_id][alice.device_id]
        assert got == fb
    # ...but counts as used.
    assert (await sync(alice))["device_unused_fallback_key_types"] == []
    # Re-uploading the same fallback key keeps it used; a new one is unused.
    await upload(alice, {"fallback_keys": fb})
    assert (await sync(alice))["device_unused_fallback_key_types"] == []
    await upload(alice, {"fallback_keys": fallback_key(key, alice.user_id, "fb2")})
    assert (await sync(alice))["device_unused_fallback_key_types"] == ["signed_curve25519"]
    # A device with no keys at all: absent from the answer.
    _, body = await bob.post("keys/claim", {"one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}})
    assert body["one_time_keys"] == {}
    empty = await sync(bob)
    assert empty["device_unused_fallback_key_types"] == []
    assert empty["device_one_time_keys_count"] == {"signed_curve25519": 0}


async def test_concurrent_claims_hand_out_each_key_once(make_client: Any) -> None:
    alice = await make_client().register()
    key = device_signing_key(alice.device_id)
    otks = one_time_keys(key, alice.user_id, 50)
    fb = fallback_key(key, alice.user_id)
    await upload(alice, {"device_keys": device_keys(alice, key), "one_time_keys": otks,
                         "fallback_keys": fb})
    claimers = [await make_client().register() for _ in range(4)]
    claim = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    results = await asyncio.gather(*(claimers[i % 4].post("keys/claim", claim) for i in range(80)))
    handed: list[str] = []
    fallbacks = 0
    for status, body in results:
        assert status == 200, body
        (kid, value), = body["one_time_keys"][alice.user_id][alice.device_id].items()
        if kid == "signed_curve25519:fb1":
            assert value == fb[kid]
            fallbacks += 1
        else:
            assert value == otks[kid]
            handed.append(kid)
    assert sorted(handed) == sorted(otks)  # each of the 50 exactly once
    assert fallbacks == 30
    assert (await sync(alice))["device_one_time_keys_count"]["signed_curve25519"] == 0


async def test_cross_signing_upload_and_uia_on_replace(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    keys = await setup_cross_signing(alice)
    uid = alice.user_id
    # The same keys again: no challenge.
    same = {"master_key": cs_key(uid, "master", keys["master"]),
            "self_signing_key": cs_key(uid, "self_signing", keys["self_signing"], keys["master"])}
    assert (await alice.post("keys/device_signing/upload", same))[0] == 200
    # Replacing them needs user-interactive auth.
    master2 = cross_signing_key()
    ssk2 = cross_signing_key()
    new = {"master_key": cs_key(uid, "master", master2),
           "self_signing_key": cs_key(uid, "self_signing", ssk2, master2)}
    status, challenge = await alice.post("keys/device_signing/upload", new)
    assert status == 401 and challenge["flows"] == [{"stages": ["m.login.password"]}]
    _, body = await bob.post("keys/query", {"device_keys": {uid: []}})
    assert list(body["master_keys"][uid]["keys"].values()) == [public_of(keys["master"])]
    assert uid not in body["user_signing_keys"]  # only for the user themself
    status, body = await alice.post("keys/device_signing/upload", {**new, "auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": uid},
        "password": "wrong", "session": challenge["session"]}})
    assert status == 401 and body["errcode"] == "M_FORBIDDEN"
    status, body = await alice.post("keys/device_signing/upload", {**new, "auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": uid},
        "password": PASSWORD, "session": challenge["session"]}})
    assert status == 200, body
    _, body = await alice.post("keys/query", {"device_keys": {uid: []}})
    assert list(body["master_keys"][uid]["keys"].values()) == [public_of(master2)]
    assert list(body["self_signing_keys"][uid]["keys"].values()) == [public_of(ssk2)]
    assert list(body["user_signing_keys"][uid]["keys"].values()) == [public_of(keys["user_signing"])]


async def test_cross_signing_keys_must_be_signed_by_master(make_client: Any) -> None:
    alice = await make_client().register()
    uid = alice.user_id
    master, ssk, other = cross_signing_key(), cross_signing_key(), cross_signing_key()
    status, body = await alice.post("keys/device_signing/upload", {
        "master_key": cs_key(uid, "master", master),
        "self_signing_key": cs_key(uid, "self_signing", ssk, other)})
    assert status == 400 and body["errcode"] == "M_INVALID_SIGNATURE"
    status, body = await alice.post("keys/device_signing/upload", {
        "self_signing_key": cs_key(uid, "self_signing", ssk, master)})
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
    status, body = await alice.post("keys/device_signing/upload", {
        "master_key": cs_key("@other:example.org", "master", master)})
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    _, body = await alice.post("keys/query", {"device_keys": {uid: []}})
    assert body["master_keys"] == {}


async def test_signatures_upload_good_and_bad(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    dkey = device_signing_key(alice.device_id)
    dkeys = device_keys(alice, dkey)
    await upload(alice, {"device_keys": dkeys})
    akeys = await setup_cross_signing(alice)
    bkeys = await setup_cross_signing(bob)
    uid = alice.user_id
    ssk_id = f"ed25519:{public_of(akeys['self_signing'])}"
    # Alice signs her device with her self-signing key (good) ...
    signed_device = sign_json(copy.deepcopy(dkeys), uid, akeys["self_signing"])
    # Her device signs her master key.
    master = cs_key(uid, "master", akeys["master"])
    by_device = sign_json(copy.deepcopy(master), uid, dkey)
    room = (await alice.post("createRoom", {"invite": [bob.user_id]}))[1]["room_id"]
    assert (await bob.post(f"join/{quote(room)}", {}))[0] == 200
    mark = (await sync(bob))["next_batch"]
    # ... and Bob's master key with a key that is not her user-signing key (bad).
    bob_master = cs_key(bob.user_id, "master", bkeys["master"])
    forged = cross_signing_key()
    forged.version = public_of(akeys["user_signing"])  # claims to be her user-signing key
    bad = sign_json(copy.deepcopy(bob_master), uid, forged)
    bob_master_id = public_of(bkeys["master"])
    status, body = await alice.post("keys/signatures/upload", {
        uid: {alice.device_id: signed_device, public_of(akeys["master"]): by_device},
        bob.user_id: {bob_master_id: bad}})
    assert status == 200, body
    # New signatures on her keys are a device list change for those sharing a room.
    assert uid in section(await sync(bob, mark), "device_lists", "changed")
    assert body["failures"] == {bob.user_id: {bob_master_id: {
        "errcode": "M_INVALID_SIGNATURE", "error": body["failures"][bob.user_id][bob_master_id]["error"]}}}
    _, body = await bob.post("keys/query", {"device_keys": {uid: []}})
    sigs = body["device_keys"][uid][alice.device_id]["signatures"][uid]
    assert sigs[ssk_id] == signed_device["signatures"][uid][ssk_id]
    assert f"ed25519:{alice.device_id}" in sigs
    master_sigs = body["master_keys"][uid]["signatures"][uid]
    assert master_sigs[f"ed25519:{alice.device_id}"] == by_device["signatures"][uid][
        f"ed25519:{alice.device_id}"]
    # A signed object that differs from the stored key is refused.
    tampered = sign_json(dict(copy.deepcopy(dkeys), algorithms=["x"]), uid, akeys["self_signing"])
    _, body = await alice.post("keys/signatures/upload", {uid: {alice.device_id: tampered}})
    assert body["failures"][uid][alice.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    # A good user-signing signature on Bob's master key is stored and shown to Alice.
    good = sign_json(copy.deepcopy(bob_master), uid, akeys["user_signing"])
    status, body = await alice.post("keys/signatures/upload", {bob.user_id: {bob_master_id: good}})
    assert status == 200 and body["failures"] == {}, body
    _, body = await alice.post("keys/query", {"device_keys": {bob.user_id: []}})
    usk_id = f"ed25519:{public_of(akeys['user_signing'])}"
    assert usk_id in body["master_keys"][bob.user_id]["signatures"][uid]
    # An unknown key.
    status, body = await alice.post("keys/signatures/upload", {bob.user_id: {"nope": good}})
    assert body["failures"][bob.user_id]["nope"]["errcode"] == "M_NOT_FOUND"


async def test_device_lists_changed_and_left(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    stranger = await make_client().register()
    start = (await sync(bob))["next_batch"]
    # Alice uploads device keys: Bob (sharing a room) sees her, the stranger does not.
    s_start = (await sync(stranger))["next_batch"]
    key = device_signing_key(alice.device_id)
    await upload(alice, {"device_keys": device_keys(alice, key)})
    body = await sync(bob, start, timeout="5000")
    assert alice.user_id in section(body, "device_lists", "changed")
    assert alice.user_id not in section(await sync(stranger, s_start), "device_lists", "changed")
    own = await sync(alice, start)
    assert alice.user_id in section(own, "device_lists", "changed")
    # Only one-time keys: no device list change.
    mark = body["next_batch"]
    await upload(alice, {"one_time_keys": one_time_keys(key, alice.user_id, 2)})
    assert alice.user_id not in section(await sync(bob, mark), "device_lists", "changed")
    # A new device logging in and uploading keys, then being deleted.
    second = await login_again(alice, make_client)
    await upload(second, {"device_keys": device_keys(second, device_signing_key(second.device_id))})
    body = await sync(bob, mark, timeout="5000")
    assert alice.user_id in section(body, "device_lists", "changed")
    mark = body["next_batch"]
    status, challenge = await alice.delete(f"devices/{quote(second.device_id)}", {})
    assert status == 401
    status, _ = await alice.delete(f"devices/{quote(second.device_id)}", {"auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": PASSWORD, "session": challenge["session"]}})
    assert status == 200
    body = await sync(bob, mark, timeout="5000")
    assert alice.user_id in section(body, "device_lists", "changed")
    _, q = await bob.post("keys/query", {"device_keys": {alice.user_id: []}})
    assert list(q["device_keys"][alice.user_id]) == [alice.device_id]
    # The stranger joins: both now see each other as changed.
    mark, s_mark = body["next_batch"], (await sync(stranger))["next_batch"]
    await alice.post(f"rooms/{quote(room_id)}/invite", {"user_id": stranger.user_id})
    assert (await stranger.post(f"join/{quote(room_id)}", {}))[0] == 200
    assert stranger.user_id in section(await sync(bob, mark), "device_lists", "changed")
    body = await sync(stranger, s_mark)
    assert {alice.user_id, bob.user_id} <= set(section(body, "device_lists", "changed"))
    # The stranger leaves: Bob has no room left with them.
    mark = (await sync(bob))["next_batch"]
    assert (await stranger.post(f"rooms/{quote(room_id)}/leave", {}))[0] == 200
    body = await sync(bob, mark)
    assert section(body, "device_lists", "left") == [stranger.user_id]
    assert stranger.user_id not in section(body, "device_lists", "changed")
    # /keys/changes answers the same between two tokens.
    status, changes = await bob.get("keys/changes", params={"from": mark, "to": body["next_batch"]})
    assert status == 200 and changes == {"changed": [], "left": [stranger.user_id]}
    status, changes = await bob.get("keys/changes", params={"from": start, "to": body["next_batch"]})
    assert alice.user_id in changes["changed"]
    status, err = await bob.get("keys/changes", params={"from": "garbage", "to": mark})
    assert status == 400 and err["errcode"] == "M_INVALID_PARAM"


async def test_bob_leaving_reports_left(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    mark = (await sync(bob))["next_batch"]
    assert (await bob.post(f"rooms/{quote(room_id)}/leave", {}))[0] == 200
    body = await sync(bob, mark)
    assert section(body, "device_lists", "left") == [alice.user_id]


async def test_cross_signing_change_is_a_device_list_change(make_client: Any) -> None:
    alice, bob, _ = await room_with(make_client)
    mark = (await sync(bob))["next_batch"]
    await setup_cross_signing(alice)
    body = await sync(bob, mark, timeout="5000")
    assert alice.user_id in section(body, "device_lists", "changed")


async def test_long_poll_wakes_on_device_change(make_client: Any) -> None:
    alice, bob, _ = await room_with(make_client)
    mark = (await sync(bob))["next_batch"]
    waiter = asyncio.ensure_future(sync(bob, mark, timeout="10000"))
    await asyncio.sleep(0.3)
    await upload(alice, {"device_keys": device_keys(alice, device_signing_key(alice.device_id))})
    body = await asyncio.wait_for(waiter, 5)
    assert alice.user_id in section(body, "device_lists", "changed")


async def test_logout_and_deactivation_remove_keys(make_client: Any) -> None:
    alice, bob, _ = await room_with(make_client)
    second = await login_again(alice, make_client)
    skey = device_signing_key(second.device_id)
    await upload(second, {"device_keys": device_keys(second, skey),
                          "one_time_keys": one_time_keys(skey, alice.user_id, 2)})
    assert (await second.post("logout", {}))[0] == 200
    _, q = await bob.post("keys/query", {"device_keys": {alice.user_id: []}})
    assert second.device_id not in q["device_keys"][alice.user_id]
    _, c = await bob.post("keys/claim", {"one_time_keys": {alice.user_id: {second.device_id: "signed_curve25519"}}})
    assert c["one_time_keys"] == {}
    key = device_signing_key(alice.device_id)
    await upload(alice, {"device_keys": device_keys(alice, key)})
    status, challenge = await alice.post("account/deactivate", {})
    assert status == 401
    status, body = await alice.post("account/deactivate", {"auth": {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": PASSWORD, "session": challenge["session"]}})
    assert status == 200, body
    _, q = await bob.post("keys/query", {"device_keys": {alice.user_id: []}})
    assert q["device_keys"][alice.user_id] == {}


async def test_key_counts_stay_true_across_syncs_claims_and_a_device_made_again(
    make_client: Any,
) -> None:
    """/sync keeps a device's counts between reads (services/e2e_keys.py): every claim and
    upload, and a device deleted and logged in again under its ID, must show at once."""
    alice, bob = await make_client().register(), await make_client().register()
    phone = await login_again(alice, make_client)
    key = device_signing_key(phone.device_id)
    await upload(phone, {"device_keys": device_keys(phone, key),
                         "one_time_keys": one_time_keys(key, phone.user_id, 3)})

    def count(body: dict[str, Any]) -> int:
        return int(body["device_one_time_keys_count"]["signed_curve25519"])

    body = await sync(phone)
    assert count(body) == 3
    claim = {"one_time_keys": {phone.user_id: {phone.device_id: "signed_curve25519"}}}
    for left in (2, 1):
        assert (await bob.post("keys/claim", claim))[0] == 200
        body = await sync(phone, body["next_batch"])
        assert count(body) == left
    await upload(phone, {"one_time_keys": one_time_keys(key, phone.user_id, 2, prefix="more")})
    body = await sync(phone, body["next_batch"])
    assert count(body) == 3

    # Deleted (keys and all), then logged in again under the same device ID: none.
    status, challenge = await alice.delete(f"devices/{phone.device_id}")
    assert status == 401, challenge
    status, resp = await alice.delete(f"devices/{phone.device_id}", {"auth": {
        "type": "m.login.password", "session": challenge["session"],
        "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": PASSWORD}})
    assert status == 200, resp
    again = make_client()
    status, resp = await again.post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": PASSWORD, "device_id": phone.device_id}, token=False)
    assert status == 200, resp
    again.access_token, again.user_id, again.device_id = (
        resp["access_token"], resp["user_id"], resp["device_id"])
    assert again.device_id == phone.device_id
    assert count(await sync(again)) == 0
