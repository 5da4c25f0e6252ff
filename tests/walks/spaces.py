"""Walk: a space's hierarchy and a room summary, with and without a token."""

from __future__ import annotations

from tests.walks import WalkContext, q


async def walk(ctx: WalkContext) -> None:
    alice, ok = ctx.alice, ctx.ok
    space = (await ok(await alice.post("createRoom", {
        "preset": "public_chat", "name": "Walk space", "creation_content": {"type": "m.space"}})))["room_id"]
    server = alice.user_id.split(":", 1)[1]
    await ok(await alice.put(f"rooms/{q(space)}/state/m.space.child/{q(ctx.room_id)}",
                             {"via": [server], "order": "a"}))
    await ok(await alice.get(f"/_matrix/client/v1/rooms/{q(space)}/hierarchy",
                             params={"limit": "1"}))
    await ok(await alice.get(f"/_matrix/client/v1/room_summary/{q(space)}"))
    await ok(await ctx.make_client().get(f"/_matrix/client/v1/room_summary/{q(space)}", token=False))
