"""A TCP relay in front of a server's federation port, so a test can cut the network between
two running servers and heal it again without restarting either.

A server's name is `localhost:<relay port>`, so every peer reaches it through the relay. The
relay runs its own event loop in a thread (it outlives each test's loop, as the session's
Synapse does). TLS passes through untouched. `cut()` drops every open connection (peers keep
connections alive) and refuses new ones at once, as a peer behind a broken link would see.
"""

from __future__ import annotations

import asyncio
import socket
import threading


class FederationLink:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut_off = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"link-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, sock=self._sock))
        self._ready.set()
        self._loop.run_forever()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _abort(writer)
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))

    def cut(self) -> None:
        self.cut_off = True
        self._loop.call_soon_threadsafe(self._drop_all)

    def heal(self) -> None:
        self.cut_off = False

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, RuntimeError):
        pass
    finally:
        _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()  # a reset, not a polite close: the link is gone
