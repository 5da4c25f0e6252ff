"""What Element asks at start-up and in its settings gets an answer, not an error: no bridged
protocols and no email addresses or phone numbers on the account."""

from __future__ import annotations

from typing import Any


async def test_no_protocols_no_threepids(make_client: Any) -> None:
    alice = await make_client().register()
    assert await alice.get("thirdparty/protocols") == (200, {})
    assert await alice.get("thirdparty/user", params={"userid": "@irc_bob:example.org"}) == (200, [])
    status, body = await alice.get("thirdparty/location")
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    assert await alice.get("account/3pid") == (200, {"threepids": []})
    assert (await make_client().get("thirdparty/protocols", token=False))[0] == 401
