"""Where media bytes live: a content-addressed store (files named by their sha256).

`MediaStore` is the interface the media service uses; `LocalMediaStore` keeps files on the
local filesystem. A store for an S3-compatible service implements the same methods (and
answers None from `local_path`, so downloads are streamed from `open` instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import BinaryIO, Protocol

STALE_TEMP_S = 6 * 3600
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MediaStore(Protocol):
    async def put(self, sha256: str, source: Path) -> None:
        """Take the finished temp file `source` as the content with this hash (consumes it)."""

    async def open(self, sha256: str) -> BinaryIO:
        """The content for reading; FileNotFoundError when absent."""

    async def delete(self, sha256: str) -> None: ...

    async def exists(self, sha256: str) -> bool: ...

    def local_path(self, sha256: str) -> Path | None:
        """A filesystem path of the content, when the store has one (lets downloads use sendfile)."""

    def new_temp_file(self) -> Path:
        """A fresh path for an upload in progress, on the same filesystem as the store."""


class LocalMediaStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.temp_dir = root / "tmp"
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        # Uploads cut off by a crash are garbage; a recent file may be an upload in progress
        # of the server while the admin CLI runs.
        cutoff = time.time() - STALE_TEMP_S
        for leftover in self.temp_dir.iterdir():
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def _path(self, sha256: str) -> Path:
        # The name is only ever a hex digest we computed: nothing a client sends reaches a path.
        if not _SHA256.match(sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def new_temp_file(self) -> Path:
        return self.temp_dir / f"upload-{secrets.token_hex(12)}"

    async def put(self, sha256: str, source: Path) -> None:
        await asyncio.to_thread(self._put, sha256, source)

    def _put(self, sha256: str, source: Path) -> None:
        target = self._path(sha256)
        if target.exists():
            source.unlink(missing_ok=True)  # the same bytes are stored already
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    async def open(self, sha256: str) -> BinaryIO:
        return await asyncio.to_thread(self._path(sha256).open, "rb")

    async def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    async def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def local_path(self, sha256: str) -> Path | None:
        return self._path(sha256)
