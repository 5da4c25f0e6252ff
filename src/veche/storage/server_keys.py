"""Other servers' signing keys and their last key responses (table server_signature_keys,
server_keys_json)."""

from __future__ import annotations

from typing import Any

import orjson

from veche.storage.database import Txn

# (key ID, unpadded base64 key, valid_until_ts, is_old)
KeyRow = tuple[str, str, int, bool]


def store_server_keys(txn: Txn, server_name: str, keys: list[KeyRow], fetched_ts: int,
                      from_server: str, key_json: dict[str, Any] | None) -> None:
    txn.executemany(
        "INSERT INTO server_signature_keys (server_name, key_id, verify_key, valid_until_ts,"
        " is_old, fetched_ts, from_server) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key,"
        " valid_until_ts = excluded.valid_until_ts, is_old = excluded.is_old,"
        " fetched_ts = excluded.fetched_ts, from_server = excluded.from_server",
        [(server_name, key_id, key, valid_until, bool(is_old), fetched_ts, from_server)
         for key_id, key, valid_until, is_old in keys],
    )
    if key_json is not None:
        txn.execute(
            "INSERT INTO server_keys_json (server_name, valid_until_ts, fetched_ts, key_json)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (server_name) DO UPDATE SET"
            " valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts,"
            " key_json = excluded.key_json",
            (server_name, int(key_json["valid_until_ts"]), fetched_ts,
             orjson.dumps(key_json).decode()),
        )


def get_server_key(txn: Txn, server_name: str, key_id: str) -> KeyRow | None:
    row = txn.fetchone(
        "SELECT key_id, verify_key, valid_until_ts, is_old FROM server_signature_keys"
        " WHERE server_name = ? AND key_id = ?", (server_name, key_id))
    return None if row is None else (row[0], row[1], int(row[2]), bool(row[3]))


def get_server_keys_json(txn: Txn, server_names: list[str]) -> dict[str, tuple[int, dict[str, Any]]]:
    """{server: (fetched_ts, last key response)} of those we have one for."""
    if not server_names:
        return {}
    clause, args = txn.in_list("server_name", server_names)
    rows = txn.fetchall(f"SELECT server_name, fetched_ts, key_json FROM server_keys_json WHERE {clause}",
                        args)
    return {r[0]: (int(r[1]), orjson.loads(r[2])) for r in rows}
