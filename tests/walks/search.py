"""Walk: server-side search with context and state."""

from __future__ import annotations

from tests.walks import WalkContext, q


async def walk(ctx: WalkContext) -> None:
    alice, ok = ctx.alice, ctx.ok
    await ok(await alice.put(f"rooms/{q(ctx.room_id)}/send/m.room.message/search1",
                             {"msgtype": "m.text", "body": "walking the search walk"}))
    await ok(await alice.post("search", {"search_categories": {"room_events": {
        "search_term": "walking", "order_by": "recent", "include_state": True,
        "event_context": {"before_limit": 1, "after_limit": 1, "include_profile": True}}}}))
