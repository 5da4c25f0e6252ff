"""A remote media server the test plays, written at the byte level (raw HTTP/1.1 over TLS
with the test CA) so it can answer what aiohttp would not let a server say: a
Content-Length that lies, a part whose own length lies, a body without any length. It
counts the requests per path and how many body bytes it got out before the reader hung up.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from tests.federation.pki import CertFiles

BOUNDARY = b"7c1e0d9a3f"
MiB = 1024 * 1024

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


def multipart_body(data: bytes, content_type: str = "image/png",
                   disposition: str = "inline; filename=\"cat.png\"",
                   part_headers: str = "") -> bytes:
    """Synapse's layout: CRLF, the JSON part, then the media part."""
    b = BOUNDARY
    return (b"\r\n--" + b + b"\r\nContent-Type: application/json\r\n\r\n{}\r\n--" + b
            + f"\r\nContent-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n"
              f"{part_headers}\r\n".encode() + data + b"\r\n--" + b + b"--\r\n")


def multipart_headers(length: int | None) -> dict[str, str]:
    headers = {"Content-Type": f"multipart/mixed; boundary={BOUNDARY.decode()}"}
    if length is not None:
        headers["Content-Length"] = str(length)
    return headers


@dataclass
class MediaPeer:
    cert: CertFiles
    port: int = 0
    # path -> how to answer; unknown paths get 404 M_UNRECOGNIZED
    answers: dict[str, Writer] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    hung_up: dict[str, bool] = field(default_factory=dict)
    _server: asyncio.Server | None = None

    @property
    def name(self) -> str:
        return f"localhost:{self.port}"

    async def start(self) -> MediaPeer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert.cert, self.cert.key)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def asked(self, prefix: str) -> list[str]:
        return [r for r in self.requests if r.startswith(prefix)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            self.requests.append(unquote(target))
            path = unquote(urlsplit(target).path)
            answer = self.answers.get(path) or json_answer(404, b'{"errcode":"M_UNRECOGNIZED"}')
            await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    # --- answers ------------------------------------------------------------------------
    def serve(self, path: str, headers: dict[str, str], body: bytes, *, status: int = 200,
              delay_s: float = 0.0) -> None:
        async def write(w: asyncio.StreamWriter) -> None:
            w.write(_head(status, headers))
            await w.drain()
            await asyncio.sleep(delay_s)
            w.write(body)
            await w.drain()
        self.answers[path] = write

    def serve_stream(self, path: str, headers: dict[str, str], prefix: bytes, total: int,
                     *, chunked: bool = False) -> None:
        """`prefix`, then `total` bytes of data, as fast as the reader takes them; records
        how much went out before the reader hung up."""
        self.sent[path] = 0
        self.hung_up[path] = False

        async def write(w: asyncio.StreamWriter) -> None:
            hdrs = {**headers, **({"Transfer-Encoding": "chunked"} if chunked else {})}
            w.write(_head(200, hdrs))
            block = bytes(range(256)) * 256  # 64 KiB
            pieces = ([prefix] if prefix else []) + [block] * (total // len(block))
            try:
                for piece in pieces:
                    w.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                    await w.drain()
                    # drain() need not yield: let a lost connection be noticed.
                    await asyncio.sleep(0)
                    if w.is_closing():
                        raise ConnectionResetError("the reader hung up")
                    self.sent[path] += len(piece)
                if chunked:
                    w.write(b"0\r\n\r\n")
                    await w.drain()
            except (ConnectionError, ssl.SSLError):
                self.hung_up[path] = True
                raise
        self.answers[path] = write


def json_answer(status: int, body: bytes) -> Writer:
    async def write(w: asyncio.StreamWriter) -> None:
        w.write(_head(status, {"Content-Type": "application/json",
                               "Content-Length": str(len(body))}) + body)
        await w.drain()
    return write


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
