"""The multipart/mixed bodies of the federation media endpoints (spec: server-server
"Content Repository"): exactly two parts, a JSON object (media metadata, `{}` today) and
then either the media's bytes or a `Location` header to fetch them from.

The reader streams: it never holds more than a chunk plus a boundary of the media part, and
it trusts no length a part claims (only the boundary ends a part), so a caller counting the
bytes it is given can stop at its own limit. A body cut short is an error, never a file.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import unquote

CRLF = b"\r\n"
MAX_HEADER_BYTES = 16 * 1024
MAX_JSON_BYTES = 64 * 1024
# The most a body may hold besides the media's bytes: preamble, two parts' headers, metadata.
MAX_OVERHEAD = 3 * MAX_HEADER_BYTES + MAX_JSON_BYTES
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))""", re.IGNORECASE)


class MultipartError(ValueError):
    """Not the two-part multipart/mixed body the spec describes."""


def boundary_of(content_type: str | None) -> str:
    if not content_type or content_type.split(";", 1)[0].strip().lower() != "multipart/mixed":
        raise MultipartError(f"expected multipart/mixed, got {content_type!r}")
    m = _BOUNDARY.search(content_type)
    if m is None:
        raise MultipartError("multipart/mixed without a boundary")
    return m.group(1) or m.group(2)


def head(boundary: str, content_type: str, disposition: str, metadata: bytes = b"{}") -> bytes:
    """Everything before the media's bytes (the layout Synapse writes and reads)."""
    b = boundary.encode()
    return (CRLF + b"--" + b + CRLF + b"Content-Type: application/json" + CRLF + CRLF + metadata
            + CRLF + b"--" + b + CRLF + b"Content-Type: " + content_type.encode() + CRLF
            + b"Content-Disposition: " + disposition.encode() + CRLF + CRLF)


def tail(boundary: str) -> bytes:
    return CRLF + b"--" + boundary.encode() + b"--" + CRLF


class MultipartReader:
    def __init__(self, boundary: str, chunks: AsyncIterator[bytes]) -> None:
        # A leading CRLF lets the first delimiter match even with no preamble before it.
        self._buf = bytearray(CRLF)
        self._chunks = chunks
        self._delimiter = CRLF + b"--" + boundary.encode()

    async def _fill(self) -> None:
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            raise MultipartError("the body ended inside a part") from None
        self._buf += chunk

    async def _until(self, marker: bytes, limit: int) -> bytes:
        while (i := self._buf.find(marker)) < 0:
            if len(self._buf) > limit:
                raise MultipartError("a part's headers or metadata are too long")
            await self._fill()
        out = bytes(self._buf[:i])
        del self._buf[:i + len(marker)]
        return out

    async def _next_part(self) -> dict[str, str]:
        """Past the next delimiter: that part's headers (names in lower case)."""
        await self._until(self._delimiter, MAX_HEADER_BYTES)
        if (await self._until(CRLF, MAX_HEADER_BYTES)).strip() == b"--":
            raise MultipartError("fewer parts than expected")
        headers: dict[str, str] = {}
        while line := await self._until(CRLF, MAX_HEADER_BYTES):
            name, sep, value = line.decode("utf-8", "replace").partition(":")
            if not sep:
                raise MultipartError("malformed part header")
            headers[name.strip().lower()] = value.strip()
        return headers

    async def metadata(self) -> bytes:
        """The first part: the JSON metadata object, as sent."""
        headers = await self._next_part()
        if headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
            raise MultipartError("the first part is not application/json")
        while (i := self._buf.find(self._delimiter)) < 0:
            if len(self._buf) > MAX_JSON_BYTES:
                raise MultipartError("the metadata part is too long")
            await self._fill()
        return bytes(self._buf[:i])

    async def media_headers(self) -> dict[str, str]:
        """The second part's headers: `location`, or `content-type` and `content-disposition`."""
        return await self._next_part()

    async def media(self) -> AsyncIterator[bytes]:
        """The second part's bytes as they arrive, up to the delimiter that must end them."""
        keep = len(self._delimiter) - 1
        while True:
            i = self._buf.find(self._delimiter)
            if i >= 0:
                if i:
                    yield bytes(self._buf[:i])
                return
            if len(self._buf) > keep:
                out = bytes(self._buf[:-keep])
                del self._buf[:-keep]
                yield out
            await self._fill()


def filename_of(disposition: str | None) -> str | None:
    """The file name a Content-Disposition gives (RFC 6266: `filename*` wins), if any sane."""
    if not disposition:
        return None
    params: dict[str, str] = {}
    for item in disposition.split(";")[1:]:
        key, sep, value = item.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip()
    name = None
    extended = params.get("filename*")
    if extended and "''" in extended:
        charset, _, encoded = extended.partition("''")
        try:
            name = unquote(encoded, encoding=charset.split("'")[0] or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            name = None
    if name is None and "filename" in params:
        name = params["filename"].strip('"')
    if not name or len(name) > 255 or not name.isprintable():
        return None
    return name
