"""Walk: third-party network lookups, the account's third-party identifiers, mutual rooms."""

from __future__ import annotations

from tests.walks import WalkContext


async def walk(ctx: WalkContext) -> None:
    alice, ok = ctx.alice, ctx.ok
    await ok(await alice.get("thirdparty/protocols"))
    await ok(await alice.get("thirdparty/location", params={"alias": "#irc_#matrix:example.org"}))
    await ok(await alice.get("thirdparty/user", params={"userid": "@irc_bob:example.org"}))
    await ok(await alice.get("account/3pid"))
    await ok(await alice.get("/_matrix/client/v1/mutual_rooms", params={"user_id": ctx.bob.user_id}))
