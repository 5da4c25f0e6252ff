"""Small HTTPS servers on loopback for federation tests: they record what arrives (port,
Host header, SNI, path, Authorization) and answer from a table the test sets."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.federation.pki import CertFiles


@dataclass
class Seen:
    port: int
    host: str
    sni: str | None
    path: str
    authorization: str | None


@dataclass
class RecordingServer:
    """Answers `responses[(host header, path)]` or `responses[path]` (status, body, headers);
    404 otherwise."""

    cert: CertFiles
    responses: dict[Any, tuple[int, Any, dict[str, str]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _sni: list[str | None] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def start(self) -> RecordingServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert.cert, self.cert.key)
        context.sni_callback = lambda sslobj, name, ctx: self._sni.append(name)  # type: ignore[assignment,misc,return-value]
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(self.port, request.headers.get("Host", ""),
                              self._sni[-1] if self._sni else None, request.path_qs,
                              request.headers.get("Authorization")))
        host = _hostname(request.headers.get("Host", ""))
        answer = self.responses.get((host, request.path)) or self.responses.get(request.path)
        if answer is None:
            return web.json_response({"errcode": "M_UNRECOGNIZED"}, status=404)
        status, body, headers = answer
        if isinstance(body, bytes):
            return web.Response(body=body, status=status, headers=headers)
        return web.json_response(body, status=status, headers=headers)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[: host.index("]") + 1]
    return host.rsplit(":", 1)[0]
