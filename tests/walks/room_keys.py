"""Walk: server-side key backups (versions and keys at every granularity)."""

from __future__ import annotations

from tests.walks import WalkContext, q

ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2"
KEY = {"first_message_index": 0, "forwarded_count": 0, "is_verified": True,
       "session_data": {"ephemeral": "e", "ciphertext": "c", "mac": "m"}}


async def walk(ctx: WalkContext) -> None:
    alice, ok = ctx.alice, ctx.ok
    version = (await ok(await alice.post("room_keys/version", {
        "algorithm": ALGORITHM, "auth_data": {"public_key": "pk"}})))["version"]
    await ok(await alice.get("room_keys/version"))
    await ok(await alice.get(f"room_keys/version/{version}"))
    await ok(await alice.put(f"room_keys/version/{version}", {
        "algorithm": ALGORITHM, "auth_data": {"public_key": "pk2"}, "version": version}))
    p, room = {"version": version}, q(ctx.room_id)
    await ok(await alice.put("room_keys/keys", {"rooms": {ctx.room_id: {"sessions": {"s1": KEY}}}},
                             params=p))
    await ok(await alice.put(f"room_keys/keys/{room}", {"sessions": {"s2": KEY}}, params=p))
    await ok(await alice.put(f"room_keys/keys/{room}/s3", KEY, params=p))
    await ok(await alice.get("room_keys/keys", params=p))
    await ok(await alice.get(f"room_keys/keys/{room}", params=p))
    await ok(await alice.get(f"room_keys/keys/{room}/s3", params=p))
    await ok(await alice.delete(f"room_keys/keys/{room}/s3", params=p))
    await ok(await alice.delete(f"room_keys/keys/{room}", params=p))
    await ok(await alice.delete("room_keys/keys", params=p))
    await ok(await alice.delete(f"room_keys/version/{version}"))
