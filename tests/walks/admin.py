"""Walk: whois, and locking and suspending an account (and lifting both)."""

from __future__ import annotations

from tests.admin_helpers import make_admin
from tests.walks import WalkContext, q


async def walk(ctx: WalkContext) -> None:
    admin, ok = await make_admin(ctx.homeserver, ctx.make_client), ctx.ok
    target = await ctx.make_client().register()
    who = q(target.user_id)
    await ok(await admin.get(f"admin/whois/{who}"))
    for flag, path in (("locked", "lock"), ("suspended", "suspend")):
        await ok(await admin.get(f"/_matrix/client/v1/admin/{path}/{who}"))
        await ok(await admin.put(f"/_matrix/client/v1/admin/{path}/{who}", {flag: True}))
        await ok(await admin.put(f"/_matrix/client/v1/admin/{path}/{who}", {flag: False}))
