"""Users, devices and tokens."""

from __future__ import annotations

from typing import Any

from veche.storage import dehydrated_devices, e2e_keys, pushers
from veche.storage.database import Txn


def create_user(
    txn: Txn, user_id: str, password_hash: str | None, now_ms: int, *, admin: bool = False,
    displayname: str | None = None,
) -> None:
    txn.execute(
        "INSERT INTO users (user_id, password_hash, is_admin, created_ts, displayname)"
        " VALUES (?, ?, ?, ?, ?)",
        (user_id, password_hash, int(admin), now_ms, displayname),
    )


def get_user(txn: Txn, user_id: str) -> dict[str, Any] | None:
    row = txn.fetchone(
        "SELECT user_id, password_hash, is_admin, deactivated, displayname, avatar_url"
        " FROM users WHERE user_id = ?",
        (user_id,),
    )
    if row is None:
        return None
    return {
        "user_id": row[0], "password_hash": row[1], "is_admin": bool(row[2]),
        "deactivated": bool(row[3]), "displayname": row[4], "avatar_url": row[5],
    }


def user_exists(txn: Txn, user_id: str) -> bool:
    return txn.fetchone("SELECT 1 FROM users WHERE user_id = ?", (user_id,)) is not None


def upsert_device(
    txn: Txn, user_id: str, device_id: str, display_name: str | None, now_ms: int
) -> bool:
    """Create the device if new (returns True); an existing device keeps its name."""
    exists = txn.fetchone(
        "SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id)
    )
    if exists:
        return False
    txn.execute(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts)"
        " VALUES (?, ?, ?, ?, ?)",
        (user_id, device_id, display_name, now_ms, now_ms),
    )
    return True


def add_access_token(
    txn: Txn, token_hash: str, user_id: str, device_id: str, now_ms: int,
    valid_until_ms: int | None = None, refresh_token_hash: str | None = None,
) -> None:
    txn.execute(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, valid_until_ms,"
        " refresh_token_hash) VALUES (?, ?, ?, ?, ?, ?)",
        (token_hash, user_id, device_id, now_ms, valid_until_ms, refresh_token_hash),
    )


def get_access_token(
    txn: Txn, token_hash: str
) -> tuple[str, str, int | None, str | None, bool, bool] | None:
    """(user_id, device_id, valid_until_ms, refresh_token_hash, locked, suspended) of a live
    token of an active user."""
    row = txn.fetchone(
        "SELECT t.user_id, t.device_id, t.valid_until_ms, t.refresh_token_hash, u.locked,"
        " u.suspended FROM access_tokens t JOIN users u ON u.user_id = t.user_id"
        " WHERE t.token_hash = ? AND u.deactivated = 0",
        (token_hash,),
    )
    return (row[0], row[1], row[2], row[3], bool(row[4]), bool(row[5])) if row else None


def get_moderation(txn: Txn, user_id: str) -> tuple[bool, bool] | None:
    """(locked, suspended) of an existing user."""
    row = txn.fetchone("SELECT locked, suspended FROM users WHERE user_id = ?", (user_id,))
    return (bool(row[0]), bool(row[1])) if row else None


def set_moderation(txn: Txn, user_id: str, flag: str, value: bool) -> None:
    assert flag in ("locked", "suspended")
    txn.execute(f"UPDATE users SET {flag} = ? WHERE user_id = ?", (int(value), user_id))


def delete_access_tokens(
    txn: Txn, user_id: str, device_id: str | None = None, *, except_hash: str | None = None
) -> list[str]:
    """Delete tokens of a device (or all of the user's); returns the hashes deleted."""
    sql = "SELECT token_hash FROM access_tokens WHERE user_id = ?"
    args: list[Any] = [user_id]
    if device_id is not None:
        sql += " AND device_id = ?"
        args.append(device_id)
    hashes = [r[0] for r in txn.fetchall(sql, args) if r[0] != except_hash]
    if hashes:
        clause, values = txn.in_list("token_hash", hashes)
        txn.execute(f"DELETE FROM access_tokens WHERE {clause}", values)
    return hashes


def add_refresh_token(txn: Txn, token_hash: str, user_id: str, device_id: str, now_ms: int) -> None:
    txn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES (?, ?, ?, ?)",
        (token_hash, user_id, device_id, now_ms),
    )


def get_refresh_token(txn: Txn, token_hash: str) -> tuple[str, str] | None:
    row = txn.fetchone(
        "SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = ?", (token_hash,)
    )
    return (row[0], row[1]) if row else None


def delete_refresh_token(txn: Txn, token_hash: str) -> None:
    txn.execute("DELETE FROM refresh_tokens WHERE token_hash = ?", (token_hash,))


def delete_refresh_tokens(txn: Txn, user_id: str, device_id: str | None) -> None:
    if device_id is None:
        txn.execute("DELETE FROM refresh_tokens WHERE user_id = ?", (user_id,))
    else:
        txn.execute("DELETE FROM refresh_tokens WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id))


def delete_access_tokens_for_refresh(txn: Txn, refresh_hash: str) -> list[str]:
    hashes = [r[0] for r in txn.fetchall(
        "SELECT token_hash FROM access_tokens WHERE refresh_token_hash = ?", (refresh_hash,))]
    txn.execute("DELETE FROM access_tokens WHERE refresh_token_hash = ?", (refresh_hash,))
    return hashes


def add_registration_token(txn: Txn, token: str, uses_allowed: int | None, expiry: int | None) -> None:
    txn.execute(
        "INSERT INTO registration_tokens (token, uses_allowed, expiry_time) VALUES (?, ?, ?)",
        (token, uses_allowed, expiry),
    )


def registration_token_usable(txn: Txn, token: str, now_ms: int) -> bool:
    row = txn.fetchone(
        "SELECT uses_allowed, completed, expiry_time FROM registration_tokens WHERE token = ?",
        (token,),
    )
    if row is None:
        return False
    uses, completed, expiry = row
    return (uses is None or completed < uses) and (expiry is None or expiry > now_ms)


def consume_registration_token(txn: Txn, token: str, now_ms: int) -> bool:
    if not registration_token_usable(txn, token, now_ms):
        return False
    txn.execute("UPDATE registration_tokens SET completed = completed + 1 WHERE token = ?", (token,))
    return True


def create_uia_session(
    txn: Txn, session_id: str, uri: str, method: str, user_id: str | None, now_ms: int
) -> None:
    txn.execute(
        "INSERT INTO ui_auth_sessions (session_id, created_ts, uri, method, user_id)"
        " VALUES (?, ?, ?, ?, ?)",
        (session_id, now_ms, uri, method, user_id),
    )


def get_uia_session(txn: Txn, session_id: str) -> dict[str, Any] | None:
    import json

    row = txn.fetchone(
        "SELECT uri, method, user_id, completed_json FROM ui_auth_sessions WHERE session_id = ?",
        (session_id,),
    )
    if row is None:
        return None
    return {"uri": row[0], "method": row[1], "user_id": row[2], "completed": json.loads(row[3])}


def set_uia_completed(txn: Txn, session_id: str, completed: list[str]) -> None:
    import json

    txn.execute("UPDATE ui_auth_sessions SET completed_json = ? WHERE session_id = ?",
                (json.dumps(completed), session_id))


def delete_uia_session(txn: Txn, session_id: str) -> None:
    txn.execute("DELETE FROM ui_auth_sessions WHERE session_id = ?", (session_id,))


def set_profile_field(txn: Txn, user_id: str, field: str, value: str | None) -> None:
    assert field in ("displayname", "avatar_url")
    txn.execute(f"UPDATE users SET {field} = ? WHERE user_id = ?", (value, user_id))


def list_devices(txn: Txn, user_id: str) -> list[dict[str, Any]]:
    return [
        {"device_id": r[0], "display_name": r[1], "last_seen_ts": r[2], "last_seen_ip": r[3]}
        for r in txn.fetchall(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = ? ORDER BY device_id", (user_id,))
    ]


def rename_device(txn: Txn, user_id: str, device_id: str, name: str | None) -> int:
    return txn.execute("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                       (name, user_id, device_id))


# --- added for the account service: refresh rotation, devices, deactivation, UIA params ---


def get_refresh_token_info(txn: Txn, token_hash: str) -> tuple[str, str, str | None] | None:
    """(user_id, device_id, next_token_hash) of a refresh token."""
    row = txn.fetchone(
        "SELECT user_id, device_id, next_token_hash FROM refresh_tokens WHERE token_hash = ?",
        (token_hash,),
    )
    return (row[0], row[1], row[2]) if row else None


def set_refresh_next(txn: Txn, token_hash: str, next_hash: str | None) -> None:
    txn.execute("UPDATE refresh_tokens SET next_token_hash = ? WHERE token_hash = ?",
                (next_hash, token_hash))


def refresh_predecessors(txn: Txn, token_hash: str) -> list[str]:
    """Refresh tokens that were rotated into this one (still valid until it is used)."""
    return [r[0] for r in txn.fetchall(
        "SELECT token_hash FROM refresh_tokens WHERE next_token_hash = ?", (token_hash,))]


def get_device(txn: Txn, user_id: str, device_id: str) -> dict[str, Any] | None:
    row = txn.fetchone(
        "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
        " WHERE user_id = ? AND device_id = ?", (user_id, device_id))
    if row is None:
        return None
    return {"device_id": row[0], "display_name": row[1], "last_seen_ts": row[2],
            "last_seen_ip": row[3]}


def touch_device(txn: Txn, user_id: str, device_id: str, ip: str | None, now_ms: int) -> None:
    txn.execute("UPDATE devices SET last_seen_ts = ?, last_seen_ip = ? WHERE user_id = ?"
                " AND device_id = ?", (now_ms, ip, user_id, device_id))


def delete_devices(
    txn: Txn, user_id: str, device_ids: list[str] | None, *, except_device: str | None = None,
    stream_pos: int | None = None,
) -> list[str]:
    """Delete devices (all of the user's when device_ids is None) with their access and
    refresh tokens, end-to-end keys and to-device inboxes; returns the access token hashes
    deleted (for the token cache). With a stream position, the user's device list is
    marked changed at it."""
    if device_ids is None:
        device_ids = [r[0] for r in txn.fetchall(
            "SELECT device_id FROM devices WHERE user_id = ?", (user_id,))]
        device_ids += [r[0] for r in txn.fetchall(
            "SELECT DISTINCT device_id FROM access_tokens WHERE user_id = ?", (user_id,))]
    targets = sorted({d for d in device_ids if d != except_device})
    hashes: list[str] = []
    for device_id in targets:
        hashes += delete_access_tokens(txn, user_id, device_id)
        delete_refresh_tokens(txn, user_id, device_id)
        txn.execute("DELETE FROM devices WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id))
        txn.execute("DELETE FROM openid_tokens WHERE user_id = ? AND device_id = ?",
                    (user_id, device_id))
    e2e_keys.delete_device_data(txn, user_id, targets)
    pushers.delete_device_pushers(txn, user_id, targets)
    dehydrated_devices.forget(txn, user_id, targets)
    if stream_pos is not None:
        e2e_keys.mark_changed(txn, [user_id], stream_pos)
    return hashes


def set_password_hash(txn: Txn, user_id: str, password_hash: str | None) -> None:
    txn.execute("UPDATE users SET password_hash = ? WHERE user_id = ?", (password_hash, user_id))


def set_deactivated(txn: Txn, user_id: str) -> None:
    txn.execute("DELETE FROM openid_tokens WHERE user_id = ?", (user_id,))
    txn.execute(
        "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL,"
        " avatar_url = NULL WHERE user_id = ?", (user_id,))


def get_uia_params(txn: Txn, session_id: str) -> dict[str, Any]:
    import json

    raw = txn.fetchval("SELECT params_json FROM ui_auth_sessions WHERE session_id = ?",
                       (session_id,))
    return json.loads(raw) if raw else {}


def set_uia_params(txn: Txn, session_id: str, params: dict[str, Any]) -> None:
    import json

    txn.execute("UPDATE ui_auth_sessions SET params_json = ? WHERE session_id = ?",
                (json.dumps(params), session_id))


def delete_old_uia_sessions(txn: Txn, before_ms: int) -> None:
    txn.execute("DELETE FROM ui_auth_sessions WHERE created_ts < ?", (before_ms,))


def revoke_refresh_predecessors(txn: Txn, refresh_hash: str) -> list[str]:
    """The refresh tokens rotated into `refresh_hash` end once its access token is used
    (spec "Refreshing access tokens"); returns the access token hashes deleted."""
    revoked: list[str] = []
    for pred in refresh_predecessors(txn, refresh_hash):
        delete_refresh_token(txn, pred)
        revoked += delete_access_tokens_for_refresh(txn, pred)
    return revoked


def add_openid_token(txn: Txn, token_hash: str, user_id: str, device_id: str, expires_ts: int,
                     now_ms: int) -> None:
    txn.execute("DELETE FROM openid_tokens WHERE expires_ts < ?", (now_ms,))
    txn.execute("INSERT INTO openid_tokens (token_hash, user_id, device_id, expires_ts)"
                " VALUES (?, ?, ?, ?)", (token_hash, user_id, device_id, expires_ts))


def get_openid_user(txn: Txn, token_hash: str, now_ms: int) -> str | None:
    return txn.fetchval(  # type: ignore[no-any-return]
        "SELECT user_id FROM openid_tokens WHERE token_hash = ? AND expires_ts > ?",
        (token_hash, now_ms))
