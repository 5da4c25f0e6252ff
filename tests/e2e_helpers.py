"""Real ed25519 keys and signatures for the end-to-end encryption key tests."""

from __future__ import annotations

import secrets
from typing import Any

from signedjson.key import generate_signing_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64


def public_of(key: Any) -> str:
    return str(encode_base64(key.verify_key.encode()))


def device_signing_key(device_id: str) -> Any:
    return generate_signing_key(device_id)


def cross_signing_key() -> Any:
    key = generate_signing_key("x")
    key.version = public_of(key)
    return key


def device_keys(client: Any, key: Any) -> dict[str, Any]:
    """Device keys for the client's device, self-signed with `key`."""
    obj = {
        "user_id": client.user_id, "device_id": client.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{client.device_id}": encode_base64(secrets.token_bytes(32)),
                 f"ed25519:{client.device_id}": public_of(key)},
    }
    return sign_json(obj, client.user_id, key)  # type: ignore[no-any-return]


def cs_key(user_id: str, usage: str, key: Any, signer: Any | None = None) -> dict[str, Any]:
    obj = {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public_of(key)}": public_of(key)}}
    return sign_json(obj, user_id, signer) if signer is not None else obj  # type: ignore[no-any-return]


def one_time_keys(key: Any, user_id: str, n: int, prefix: str = "k") -> dict[str, Any]:
    return {f"signed_curve25519:{prefix}{i}": sign_json(
        {"key": encode_base64(secrets.token_bytes(32))}, user_id, key) for i in range(n)}


def fallback_key(key: Any, user_id: str, key_id: str = "fb1") -> dict[str, Any]:
    return {f"signed_curve25519:{key_id}": sign_json(
        {"key": encode_base64(secrets.token_bytes(32)), "fallback": True}, user_id, key)}


async def upload(client: Any, body: dict[str, Any]) -> tuple[int, Any]:
    return await client.post("keys/upload", body)  # type: ignore[no-any-return]


async def setup_cross_signing(client: Any, password: str = "correct horse battery") -> dict[str, Any]:
    """Upload master, self-signing and user-signing keys; returns the private keys."""
    master, ssk, usk = cross_signing_key(), cross_signing_key(), cross_signing_key()
    status, body = await client.post("keys/device_signing/upload", {
        "master_key": cs_key(client.user_id, "master", master),
        "self_signing_key": cs_key(client.user_id, "self_signing", ssk, master),
        "user_signing_key": cs_key(client.user_id, "user_signing", usk, master),
    })
    assert status == 200, body
    return {"master": master, "self_signing": ssk, "user_signing": usk}


async def login_again(client: Any, make_client: Any, password: str = "correct horse battery") -> Any:
    """A new device (and client) of the same user, by password login."""
    other = make_client()
    status, body = await other.post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": client.user_id},
        "password": password}, token=False)
    assert status == 200, body
    other.access_token, other.user_id, other.device_id = (
        body["access_token"], body["user_id"], body["device_id"])
    return other
