"""Shared helpers for the media tests: images, raw requests, and checks of the media store."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image
from yarl import URL


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    img = Image.new("RGB", (width, height), color)
    # A gradient so each thumbnail size gives different bytes (no accidental dedup).
    for x in range(0, width, max(1, width // 20)):
        img.putpixel((x, height // 2), (x % 256, 0, 255))
    img.save(out, "PNG")
    return out.getvalue()


def animated_gif(width: int = 200, height: int = 150, frames: int = 4) -> bytes:
    imgs = [Image.new("RGB", (width, height), (i * 60 % 256, 100, 200)) for i in range(frames)]
    out = io.BytesIO()
    imgs[0].save(out, "GIF", save_all=True, append_images=imgs[1:], duration=100, loop=0)
    return out.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims an enormous size (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def image_of(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def split_mxc(uri: str) -> tuple[str, str]:
    assert uri.startswith("mxc://"), uri
    server, media_id = uri[6:].split("/", 1)
    return server, media_id


async def raw(session: aiohttp.ClientSession, method: str, url: str, token: str | None = None,
              data: Any = None, headers: dict[str, str] | None = None,
              encoded: bool = False) -> tuple[int, Any, bytes]:
    """A request whose status, headers and raw body are all returned."""
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    target = URL(url, encoded=True) if encoded else url
    async with session.request(method, target, data=data, headers=hdrs) as resp:
        return resp.status, resp.headers, await resp.read()


def media_files(data_dir: Path) -> dict[str, Path]:
    """Every content file in the store, by name; asserts nothing else (no temp or partial
    file) is there and that each file's bytes hash to its name."""
    root = data_dir / "media"
    out: dict[str, Path] = {}
    if not root.exists():
        return out
    leftovers = list((root / "tmp").iterdir()) if (root / "tmp").exists() else []
    assert not leftovers, f"temp files left behind: {leftovers}"
    for path in root.rglob("*"):
        if path.is_dir():
            continue
        rel = path.relative_to(root).parts
        assert len(rel) == 3 and rel[0] == rel[2][:2] and rel[1] == rel[2][2:4], path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == rel[2], f"partial content in {path}"
        out[rel[2]] = path
    return out
