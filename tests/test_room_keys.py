"""Server-side key backups: versions, keys, replacement rules, etag/count, errors."""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import quote

ALG = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!backuproom:example.org"
PW = "correct horse battery"


def key(index: int = 0, forwarded: int = 0, verified: bool = False, tag: str = "x") -> dict[str, Any]:
    return {"first_message_index": index, "forwarded_count": forwarded, "is_verified": verified,
            "session_data": {"ephemeral": "e", "ciphertext": tag, "mac": "m"}}


async def new_version(client: Any, public_key: str = "pk") -> str:
    status, body = await client.post("room_keys/version",
                                      {"algorithm": ALG, "auth_data": {"public_key": public_key}})
    assert status == 200, body
    return body["version"]  # type: ignore[no-any-return]


async def test_versions_lifecycle(make_client: Any) -> None:
    alice = await make_client().register()
    status, err = await alice.get("room_keys/version")
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"
    v1 = await new_version(alice)
    v2 = await new_version(alice, "pk2")
    assert v1 != v2
    status, cur = await alice.get("room_keys/version")
    assert status == 200 and cur["version"] == v2 and cur["auth_data"] == {"public_key": "pk2"}
    assert cur["algorithm"] == ALG and cur["count"] == 0
    status, old = await alice.get(f"room_keys/version/{v1}")
    assert status == 200 and old["auth_data"] == {"public_key": "pk"}

    # Only auth_data may change; the algorithm must match and a body version must match the path.
    status, _ = await alice.put(f"room_keys/version/{v2}", {"algorithm": ALG, "auth_data": {"public_key": "pk3"}})
    assert status == 200
    assert (await alice.get("room_keys/version"))[1]["auth_data"] == {"public_key": "pk3"}
    status, err = await alice.put(f"room_keys/version/{v2}", {"algorithm": "m.other", "auth_data": {}})
    assert status == 400 and err["errcode"] == "M_INVALID_PARAM"
    status, err = await alice.put(f"room_keys/version/{v2}",
                                  {"algorithm": ALG, "auth_data": {}, "version": v1})
    assert status == 400 and err["errcode"] == "M_INVALID_PARAM"
    status, err = await alice.put("room_keys/version/999", {"algorithm": ALG, "auth_data": {}})
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"

    # Deleting the current version makes the previous one current; numbers are never reused.
    assert (await alice.delete(f"room_keys/version/{v2}"))[0] == 200
    assert (await alice.get("room_keys/version"))[1]["version"] == v1
    status, err = await alice.get(f"room_keys/version/{v2}")
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"
    status, err = await alice.delete(f"room_keys/version/{v2}")
    assert status == 404
    v3 = await new_version(alice)
    assert v3 not in (v1, v2)

    # Another user sees none of it.
    bob = await make_client().register()
    assert (await bob.get("room_keys/version"))[0] == 404
    assert (await bob.get(f"room_keys/version/{v3}"))[0] == 404


async def test_keys_upload_get_delete_with_etag_and_count(make_client: Any) -> None:
    alice = await make_client().register()
    version = await new_version(alice)
    p, room = {"version": version}, quote(ROOM)
    status, r1 = await alice.put("room_keys/keys", {"rooms": {ROOM: {"sessions": {"s1": key()}}}},
                                 params=p)
    assert status == 200 and r1["count"] == 1
    status, r2 = await alice.put(f"room_keys/keys/{room}", {"sessions": {"s2": key()}}, params=p)
    assert r2["count"] == 2 and r2["etag"] != r1["etag"]
    status, r3 = await alice.put(f"room_keys/keys/{room}/s3", key(tag="three"), params=p)
    assert r3["count"] == 3 and r3["etag"] not in (r1["etag"], r2["etag"])
    status, info = await alice.get("room_keys/version")
    assert info["count"] == 3 and info["etag"] == r3["etag"]

    status, everything = await alice.get("room_keys/keys", params=p)
    assert status == 200 and set(everything["rooms"][ROOM]["sessions"]) == {"s1", "s2", "s3"}
    status, in_room = await alice.get(f"room_keys/keys/{room}", params=p)
    assert set(in_room["sessions"]) == {"s1", "s2", "s3"}
    status, one = await alice.get(f"room_keys/keys/{room}/s3", params=p)
    assert status == 200 and one == key(tag="three")
    status, empty = await alice.get(f"room_keys/keys/{quote('!other:example.org')}", params=p)
    assert status == 200 and empty == {"sessions": {}}
    status, err = await alice.get(f"room_keys/keys/{room}/nosuch", params=p)
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"

    # Re-uploading a key that is no better changes nothing: same etag.
    status, same = await alice.put(f"room_keys/keys/{room}/s3", key(tag="again"), params=p)
    assert same["etag"] == r3["etag"] and same["count"] == 3
    assert (await alice.get(f"room_keys/keys/{room}/s3", params=p))[1]["session_data"]["ciphertext"] == "three"

    status, d1 = await alice.delete(f"room_keys/keys/{room}/s3", params=p)
    assert status == 200 and d1["count"] == 2 and d1["etag"] != r3["etag"]
    status, d2 = await alice.delete(f"room_keys/keys/{room}", params=p)
    assert d2["count"] == 0
    assert (await alice.put(f"room_keys/keys/{room}/s4", key(), params=p))[1]["count"] == 1
    status, d3 = await alice.delete("room_keys/keys", params=p)
    assert d3["count"] == 0 and (await alice.get("room_keys/keys", params=p))[1] == {"rooms": {}}


async def test_replacement_rules(make_client: Any) -> None:
    alice = await make_client().register()
    version = await new_version(alice)
    p, path = {"version": version}, f"room_keys/keys/{quote(ROOM)}/sess"

    async def stored() -> str:
        status, body = await alice.get(path, params=p)
        assert status == 200, body
        return body["session_data"]["ciphertext"]  # type: ignore[no-any-return]

    first = (await alice.put(path, key(index=5, forwarded=2, tag="first"), params=p))[1]
    kept = (await alice.put(path, key(index=6, forwarded=0, tag="later-index"), params=p))[1]
    assert await stored() == "first"  # a higher first_message_index loses
    assert kept == first  # nothing changed: same etag, same count
    replaced = (await alice.put(path, key(index=5, forwarded=1, tag="fewer-forwards"), params=p))[1]
    assert await stored() == "fewer-forwards"  # same index: fewer forwards wins
    assert replaced["etag"] != first["etag"] and replaced["count"] == 1
    await alice.put(path, key(index=2, forwarded=3, tag="lower-index"), params=p)
    assert await stored() == "lower-index"  # a lower index beats the forward count
    await alice.put(path, key(index=9, forwarded=9, verified=True, tag="verified"), params=p)
    assert await stored() == "verified"  # verified beats everything unverified
    await alice.put(path, key(index=0, forwarded=0, verified=False, tag="unverified"), params=p)
    assert await stored() == "verified"
    await alice.put(path, key(index=1, forwarded=9, verified=True, tag="verified-lower"), params=p)
    assert await stored() == "verified-lower"


async def test_wrong_and_unknown_versions(make_client: Any) -> None:
    alice = await make_client().register()
    path = f"room_keys/keys/{quote(ROOM)}/sess"
    status, err = await alice.put(path, key(), params={"version": "1"})
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"  # no backup at all
    old = await new_version(alice)
    current = await new_version(alice)
    status, err = await alice.put(path, key(), params={"version": old})
    assert status == 403 and err["errcode"] == "M_WRONG_ROOM_KEYS_VERSION"
    assert err["current_version"] == current
    status, err = await alice.put("room_keys/keys", {"rooms": {}}, params={"version": "nope"})
    assert status == 403 and err["current_version"] == current
    status, err = await alice.get("room_keys/keys", params={"version": "12345"})
    assert status == 404 and err["errcode"] == "M_NOT_FOUND"
    status, err = await alice.get("room_keys/keys")
    assert status == 400 and err["errcode"] == "M_MISSING_PARAM"

    # Deleting a version deletes its keys: a new version starts empty, the old stays unknown.
    assert (await alice.put(path, key(), params={"version": current}))[0] == 200
    assert (await alice.delete(f"room_keys/version/{current}"))[0] == 200
    status, err = await alice.get(path, params={"version": current})
    assert status == 404
    newest = await new_version(alice)
    assert (await alice.get("room_keys/keys", params={"version": newest}))[1] == {"rooms": {}}


async def test_bad_key_data_is_rejected(make_client: Any) -> None:
    alice = await make_client().register()
    p = {"version": await new_version(alice)}
    path = f"room_keys/keys/{quote(ROOM)}/sess"
    for bad in ({**key(), "first_message_index": -1}, {**key(), "forwarded_count": "1"},
                {**key(), "is_verified": 1}, {**key(), "session_data": "x"},
                {"first_message_index": 0}):
        status, err = await alice.put(path, bad, params=p)
        assert status == 400 and err["errcode"] == "M_BAD_JSON", (bad, err)
    status, err = await alice.put("room_keys/keys", {"rooms": {"notaroom": {"sessions": {}}}}, params=p)
    assert status == 400 and err["errcode"] == "M_INVALID_PARAM"
    # Nothing of a rejected batch is stored.
    status, err = await alice.put("room_keys/keys", {"rooms": {ROOM: {"sessions": {
        "good": key(), "bad": {**key(), "is_verified": None}}}}}, params=p)
    assert status == 400
    assert (await alice.get("room_keys/keys", params=p))[1] == {"rooms": {}}
    status, err = await alice.post("room_keys/version", {"algorithm": ALG})
    assert status == 400 and err["errcode"] == "M_MISSING_PARAM"
    status, err = await alice.post("room_keys/version", {"algorithm": ALG, "auth_data": []})
    assert status == 400 and err["errcode"] == "M_BAD_JSON"


def _backup_rows(homeserver: Any, user_id: str) -> int:
    sql = "SELECT COUNT(*) FROM room_key_backups WHERE user_id = "
    if homeserver.backend == "sqlite":
        with sqlite3.connect(homeserver.db_url.removeprefix("sqlite:///")) as db:
            return int(db.execute(sql + "?", (user_id,)).fetchone()[0])
    import psycopg

    with psycopg.connect(homeserver.db_url) as conn:
        row = conn.execute(sql + "%s", (user_id,)).fetchone()
        assert row is not None
        return int(row[0])


async def test_deactivation_deletes_backups(make_client: Any, homeserver: Any) -> None:
    alice = await make_client().register(password=PW)
    version = await new_version(alice)
    await alice.put(f"room_keys/keys/{quote(ROOM)}/sess", key(), params={"version": version})
    assert _backup_rows(homeserver, alice.user_id) == 1
    status, challenge = await alice.post("account/deactivate", {})
    status, _ = await alice.post("account/deactivate", {"auth": {
        "type": "m.login.password", "session": challenge["session"],
        "identifier": {"type": "m.id.user", "user": alice.user_id}, "password": PW}})
    assert status == 200
    assert _backup_rows(homeserver, alice.user_id) == 0
