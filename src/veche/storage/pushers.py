"""Pushers (the table made by migration 0011)."""

from __future__ import annotations

from typing import Any

import orjson

from veche.storage.database import Txn

_COLUMNS = ("app_id", "pushkey", "kind", "app_display_name", "device_display_name",
            "profile_tag", "lang", "data_json", "pushkey_ts")


def users_with_pushers(txn: Txn) -> list[str]:
    return [r[0] for r in txn.fetchall("SELECT DISTINCT user_id FROM pushers")]


def get_pushers(txn: Txn, user_id: str) -> list[dict[str, Any]]:
    rows = txn.fetchall(f"SELECT {', '.join(_COLUMNS)} FROM pushers WHERE user_id = ?"
                        " ORDER BY pushkey_ts, app_id, pushkey", (user_id,))
    out = []
    for row in rows:
        pusher = dict(zip(_COLUMNS, row, strict=True))
        pusher["data"] = orjson.loads(pusher.pop("data_json"))
        if pusher["profile_tag"] is None:
            del pusher["profile_tag"]
        out.append(pusher)
    return out


def set_pusher(txn: Txn, user_id: str, device_id: str | None, pusher: dict[str, Any],
               append: bool) -> None:
    app_id, pushkey = pusher["app_id"], pusher["pushkey"]
    if not append:
        # The push key now belongs to this user alone (the app moved to another account).
        txn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id != ?",
                    (app_id, pushkey, user_id))
    txn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id = ?",
                (app_id, pushkey, user_id))
    txn.execute(
        "INSERT INTO pushers (user_id, device_id, app_id, pushkey, kind, app_display_name,"
        " device_display_name, profile_tag, lang, data_json, pushkey_ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (user_id, device_id, app_id, pushkey, pusher["kind"], pusher["app_display_name"],
         pusher["device_display_name"], pusher.get("profile_tag"), pusher["lang"],
         orjson.dumps(pusher["data"]).decode(), pusher["pushkey_ts"]))


def delete_pusher(txn: Txn, user_id: str, app_id: str, pushkey: str) -> None:
    txn.execute("DELETE FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id = ?",
                (app_id, pushkey, user_id))


def delete_device_pushers(txn: Txn, user_id: str, device_ids: list[str] | None) -> None:
    if device_ids is None:
        txn.execute("DELETE FROM pushers WHERE user_id = ?", (user_id,))
        return
    clause, args = txn.in_list("device_id", device_ids)
    txn.execute(f"DELETE FROM pushers WHERE user_id = ? AND {clause}", [user_id, *args])
