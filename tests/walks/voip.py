"""Walk: TURN credentials (the shared server has a TURN relay configured)."""

from __future__ import annotations

from tests.walks import WalkContext


async def walk(ctx: WalkContext) -> None:
    await ctx.ok(await ctx.alice.get("voip/turnServer"))
