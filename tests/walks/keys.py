"""Walk: end-to-end encryption keys, cross-signing and send-to-device."""

from __future__ import annotations

import copy

from signedjson.sign import sign_json

from tests.e2e_helpers import (
    device_keys,
    device_signing_key,
    fallback_key,
    one_time_keys,
    setup_cross_signing,
)
from tests.walks import WalkContext, q


async def walk(ctx: WalkContext) -> None:
    alice, bob, ok = ctx.alice, ctx.bob, ctx.ok
    before = (await ok(await bob.get("sync")))["next_batch"]
    key = device_signing_key(alice.device_id)
    dkeys = device_keys(alice, key)
    await ok(await alice.post("keys/upload", {
        "device_keys": dkeys, "one_time_keys": one_time_keys(key, alice.user_id, 2),
        "fallback_keys": fallback_key(key, alice.user_id)}))
    await ok(await bob.post("keys/query", {"device_keys": {alice.user_id: []}}))
    await ok(await bob.post("keys/claim", {
        "one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}))
    after = (await ok(await bob.get("sync", params={"since": before})))["next_batch"]
    await ok(await bob.get("keys/changes", params={"from": before, "to": after}))
    cs = await setup_cross_signing(alice, "walk-password")
    signed = sign_json(copy.deepcopy(dkeys), alice.user_id, cs["self_signing"])
    body = await ok(await alice.post("keys/signatures/upload",
                                     {alice.user_id: {alice.device_id: signed}}))
    assert body["failures"] == {}, body
    await ok(await alice.post("keys/query", {"device_keys": {alice.user_id: [alice.device_id]}}))
    await ok(await alice.put(f"sendToDevice/m.walk/{q('w-td1')}", {
        "messages": {bob.user_id: {"*": {"hello": "bob"}}}}))
