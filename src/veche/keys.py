"""The server's ed25519 signing key, generated on first start and kept in the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from signedjson.key import (
    SigningKey,
    generate_signing_key,
    read_signing_keys,
    write_signing_keys,
)


def load_or_create_signing_key(data_dir: Path) -> SigningKey:
    path = data_dir / "signing.key"
    if path.exists():
        with path.open() as f:
            return read_signing_keys(f)[0]
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key("a_" + secrets.token_hex(2))
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        write_signing_keys(f, [key])
    os.replace(tmp, path)
    return key
