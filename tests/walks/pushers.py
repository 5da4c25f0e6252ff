"""Walk: setting and listing pushers."""

from __future__ import annotations

from tests.walks import WalkContext


async def walk(ctx: WalkContext) -> None:
    alice, ok = ctx.alice, ctx.ok
    await ok(await alice.post("pushers/set", {
        "kind": "http", "app_id": "org.example.walk", "pushkey": "walk-key",
        "app_display_name": "Walk", "device_display_name": "Walker", "lang": "en",
        "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}}))
    await ok(await alice.get("pushers"))
