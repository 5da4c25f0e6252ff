"""gzip for client-API JSON answers, when the client says it accepts it.

On a slow link the bytes are the time: an Element-like initial /sync of 50 rooms shrinks to
a sixth. Level 9 is the measured choice (`python -m bench.gzip_levels`, bench/RESULTS.md,
"Throttled link"): on that 171 KB body it gives 26.4 KB against 27.7 KB at level 6 and
31.8 KB at level 1, for 3.2 ms of CPU against 1.4 and 0.65 ms; 1.3 KB is 160 ms at
64 kbit/s, worth far more to the phone than 2 ms is to the server. Small bodies compress
the same at every level. Bodies under MIN_BYTES are sent as they are: the gzip header and
trailer (18 bytes) and the `Content-Encoding` line (24) eat what they would save (a
147-byte empty /sync answer gzips to 132). Big bodies are compressed in a thread (zlib lets
go of the GIL) so that other requests are not held up meanwhile.
"""

from __future__ import annotations

import asyncio
import gzip

from aiohttp import web

LEVEL = 9
MIN_BYTES = 300
THREAD_BYTES = 64 * 1024
CLIENT_PREFIX = "/_matrix/client/"


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header admits gzip (RFC 9110 12.5.3: `q=0` refuses it)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


async def maybe_compress(request: web.Request, resp: web.StreamResponse) -> None:
    """Compress `resp` in place if it is a client-API JSON body worth compressing and the
    client accepts gzip. Responses streamed already (media) are left alone."""
    if (not isinstance(resp, web.Response) or resp.prepared
            or not request.path.startswith(CLIENT_PREFIX)
            or resp.content_type != "application/json"
            or "Content-Encoding" in resp.headers):
        return
    body = resp.body
    if not isinstance(body, bytes) or len(body) < MIN_BYTES:
        return  # the same answer whatever the client accepts: no Vary either
    resp.headers["Vary"] = "Accept-Encoding"
    if not accepts_gzip(request.headers.get("Accept-Encoding", "")):
        return
    if len(body) >= THREAD_BYTES:
        resp.body = await asyncio.to_thread(gzip.compress, body, LEVEL, mtime=0)
    else:
        resp.body = gzip.compress(body, compresslevel=LEVEL, mtime=0)
    resp.headers["Content-Encoding"] = "gzip"
