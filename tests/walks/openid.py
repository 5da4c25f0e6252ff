"""Walk: an OpenID token."""

from __future__ import annotations

from tests.walks import WalkContext, q


async def walk(ctx: WalkContext) -> None:
    await ctx.ok(await ctx.alice.post(f"user/{q(ctx.alice.user_id)}/openid/request_token", {}))
