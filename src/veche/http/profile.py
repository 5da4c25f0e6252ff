"""User profiles (spec: client-server API "Profiles")."""

from __future__ import annotations

from aiohttp import web

from veche.errors import bad_json, forbidden, not_found
from veche.http.base import CLIENT_V3, hs_of, json_body, json_response, requester
from veche.storage import accounts as store
from veche.storage import events as event_store

routes = web.RouteTableDef()
FIELDS = ("displayname", "avatar_url")


async def _profile(request: web.Request) -> dict[str, str]:
    user = await hs_of(request).db.run(store.get_user, request.match_info["user_id"])
    if user is None:
        raise not_found("Profile not found")
    return {k: user[k] for k in FIELDS if user[k] is not None}


@routes.get(CLIENT_V3 + "/profile/{user_id}")
async def get_profile(request: web.Request) -> web.Response:
    return json_response(await _profile(request))


@routes.get(CLIENT_V3 + "/profile/{user_id}/{field}")
async def get_field(request: web.Request) -> web.Response:
    field = request.match_info["field"]
    profile = await _profile(request)
    if field not in FIELDS or field not in profile:
        raise not_found("Profile field not found")
    return json_response({field: profile[field]})


@routes.put(CLIENT_V3 + "/profile/{user_id}/{field}")
async def set_field(request: web.Request) -> web.Response:
    hs = hs_of(request)
    req = await requester(request)
    user_id, field = request.match_info["user_id"], request.match_info["field"]
    if user_id != req.user_id:
        raise forbidden("You may only change your own profile")
    if field not in FIELDS:
        raise not_found("Unknown profile field")
    body = await json_body(request)
    value = body.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > 1000):
        raise bad_json(f"{field} must be a string of at most 1000 characters")
    hs.ratelimiter.check("profile", user_id)
    await hs.db.run(store.set_profile_field, user_id, field, value)
    # Tell every room the user is in, as the spec asks.
    rooms = await hs.db.run(event_store.get_rooms_for_user, user_id)
    for room_id in rooms:
        member = await hs.db.run(
            lambda t, r=room_id: event_store.get_current_state(t, r, [("m.room.member", user_id)])
        )
        current = member.get(("m.room.member", user_id))
        content = dict(current["content"]) if current else {"membership": "join"}
        if value is None:
            content.pop(field, None)
        else:
            content[field] = value
        try:
            await hs.events.send(room_id, user_id, "m.room.member", content, user_id)
        except Exception:  # noqa: BLE001 - one room refusing must not stop the others
            continue
    return json_response({})

