"""The server's ed25519 signing key, generated on first start and kept in the data dir.

A rotation (`veche rotate-signing-key`) replaces it with a new key and records the old one's
public half, with when it stopped being used, in old_verify_keys.json beside it: other
servers still need it to check the events it signed, so it stays published as one of our
`old_verify_keys`.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from signedjson.key import (
    SigningKey,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
    read_signing_keys,
    write_signing_keys,
)

KEY_FILE = "signing.key"
OLD_KEYS_FILE = "old_verify_keys.json"


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _new_key(avoid: set[str]) -> SigningKey:
    while True:
        version = "a_" + secrets.token_hex(2)
        if f"ed25519:{version}" not in avoid:
            return generate_signing_key(version)


def _key_text(key: SigningKey) -> str:
    import io

    out = io.StringIO()
    write_signing_keys(out, [key])
    return out.getvalue()


def load_or_create_signing_key(data_dir: Path) -> SigningKey:
    path = data_dir / KEY_FILE
    if path.exists():
        with path.open() as f:
            return read_signing_keys(f)[0]
    data_dir.mkdir(parents=True, exist_ok=True)
    key = _new_key(set(load_old_verify_keys(data_dir)))
    _write_private(path, _key_text(key))
    return key


def load_old_verify_keys(data_dir: Path) -> dict[str, dict[str, Any]]:
    """{key ID: {"key": base64, "expired_ts": ms}} of the keys this server used to sign with."""
    path = data_dir / OLD_KEYS_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def rotate_signing_key(data_dir: Path) -> tuple[str, str]:
    """Replace the signing key; the old one's public key is kept. Returns (old ID, new ID)."""
    old = load_or_create_signing_key(data_dir)
    old_id = f"ed25519:{old.version}"
    old_keys = load_old_verify_keys(data_dir)
    old_keys[old_id] = {"key": encode_verify_key_base64(get_verify_key(old)),
                        "expired_ts": int(time.time() * 1000)}
    new = _new_key(set(old_keys))
    # The old key is recorded before the new one replaces it: a crash in between leaves the
    # old key still in use and merely listed as old too, never a key lost.
    _write_private(data_dir / OLD_KEYS_FILE, json.dumps(old_keys, indent=1, sort_keys=True))
    _write_private(data_dir / KEY_FILE, _key_text(new))
    return old_id, f"ed25519:{new.version}"
