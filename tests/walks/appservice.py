"""Walk: an application service pings itself through the homeserver."""

from __future__ import annotations

from aiohttp import web

from tests.conftest import WALK_AS, WALK_AS_PORT
from tests.walks import WalkContext


async def walk(ctx: WalkContext) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/_matrix/app/v1/ping", answer)
    app.router.add_put("/_matrix/app/v1/transactions/{txn}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", WALK_AS_PORT).start()
    try:
        bridge = ctx.make_client()
        bridge.access_token = WALK_AS["as_token"]
        await ctx.ok(await bridge.post(f"/_matrix/client/v1/appservice/{WALK_AS['id']}/ping",
                                       {"transaction_id": "walk"}))
    finally:
        await runner.cleanup()
