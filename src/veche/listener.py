"""The HTTP listener: aiohttp's server with a request-head timeout and a short keep-alive.

aiohttp bounds an idle connection by its keep-alive timeout only (an hour by default) and
has no limit on how long a request head may take to arrive, so sockets that connect and
trickle a byte now and then pile up until the process runs out of file descriptors. Here a
request head must arrive within `header_timeout_s` of its first byte (or of the connection
opening), and an idle keep-alive connection is closed after `keepalive_timeout_s`. Neither
applies while a request is being handled, so long-polling /sync and streamed uploads keep
their own pace.

On shutdown the listening socket closes first; a request being handled, its body still
arriving, gets `shutdown_timeout_s` to finish.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler


class _HeadTimeoutHandler(RequestHandler):
    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._veche_head_timeout = header_timeout
        self._veche_head_timer: asyncio.TimerHandle | None = None

    def _waiting_for_head(self) -> bool:
        # aiohttp awaits `_waiter` between requests; while it handles one it is unset.
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _arm(self) -> None:
        if self._veche_head_timer is None:
            self._veche_head_timer = asyncio.get_running_loop().call_later(
                self._veche_head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._veche_head_timer is not None:
            self._veche_head_timer.cancel()
            self._veche_head_timer = None

    def _head_timed_out(self) -> None:
        self._veche_head_timer = None
        if self._waiting_for_head():
            self.force_close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if (self._close or self._force_close) and self._request_in_progress:
            # A graceful shutdown marks the connection closing (aiohttp's pre_shutdown and
            # shutdown), which makes aiohttp drop whatever arrives; the request being handled
            # must still get the rest of its body, or it hangs until the grace period ends.
            # Further requests on the connection are still refused: it closes after this one.
            closing = self._close, self._force_close
            self._close = self._force_close = False
            try:
                super().data_received(data)
            finally:
                self._close, self._force_close = closing
            return
        super().data_received(data)
        if self._messages or (self._waiter is not None and self._waiter.done()):
            self._disarm()  # a whole request head arrived
        elif self._waiting_for_head():
            self._arm()  # part of a head: it has header_timeout_s from its first byte

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class _Runner(web.AppRunner):
    def __init__(self, app: web.Application, *, header_timeout: float, keepalive_timeout: float,
                 shutdown_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=keepalive_timeout,
                         shutdown_timeout=shutdown_timeout, **kwargs)
        self._handler_args = {"header_timeout": header_timeout,
                              "keepalive_timeout": keepalive_timeout, **kwargs}

    @property
    def server(self) -> Any:
        inner = super().server
        if inner is None:
            return None
        loop = asyncio.get_running_loop()
        args = {k: v for k, v in self._handler_args.items() if k != "handle_signals"}
        # TCPSite calls this as the protocol factory: one handler per connection.
        return lambda: _HeadTimeoutHandler(inner, loop=loop, **args)


async def listen(app: web.Application, host: str, port: int, *, header_timeout_s: float,
                 keepalive_timeout_s: float, shutdown_timeout_s: float = 10.0,
                 ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Serve app on host:port (over TLS with `ssl_context`); raises OSError when the address
    cannot be bound."""
    runner = _Runner(app, header_timeout=header_timeout_s, keepalive_timeout=keepalive_timeout_s,
                     access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=4096, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
