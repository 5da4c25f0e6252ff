"""Compressed client-API JSON answers, in the coding the client prefers of brotli and gzip.

On a slow link the bytes are the time: an Element-like initial /sync of 50 rooms shrinks to
a sixth. Measured on that 447 KB body (bench/RESULTS.md, "Throttled link"): gzip level 9
gives 74.4 KB for ~10 ms of CPU (level 6: 78.0 KB, level 1: 88.7 KB; 2.6 KB is 330 ms at
64 kbit/s, worth far more to the phone than 5 ms is to the server); brotli quality 5 gives
67.5 KB for ~5 ms, and a one-message live /sync 318 bytes against gzip's 361 (its built-in
dictionary knows JSON's words). Higher brotli qualities gain little until 10 and 11 (62.5
and 61.3 KB), which cost 0.3 and 1 s of CPU: more than they save on anything but the
slowest links, and a server cannot tell which link it is on. Browsers offer br (Element
Web, Veche's web client); Element X (matrix-rust-sdk's reqwest), Element Android, FluffyChat
and the bots' libraries offer gzip only, so both are kept.

Bodies under MIN_BYTES are sent as they are: the coding's header and trailer and the
`Content-Encoding` line eat what they would save (a 147-byte empty /sync answer gzips to
132). Big bodies are compressed in a thread (zlib and brotli let go of the GIL) so that
other requests are not held up meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
from collections.abc import Callable

import brotli
from aiohttp import web

GZIP_LEVEL = 9
BROTLI_QUALITY = 5
MIN_BYTES = 300
THREAD_BYTES = 64 * 1024
CLIENT_PREFIX = "/_matrix/client/"

_COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    # Preferred first when the client weighs them the same: brotli's answers are smaller.
    "br": functools.partial(brotli.compress, quality=BROTLI_QUALITY),
    "gzip": functools.partial(gzip.compress, compresslevel=GZIP_LEVEL, mtime=0),
}


def _weights(header: str) -> dict[str, float]:
    """Each coding's q-value from an Accept-Encoding header (RFC 9110 12.5.3); `*` stands
    for every coding not named; a q-value that does not parse counts as a refusal."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights["gzip" if coding == "x-gzip" else coding] = q
    return weights


def choose_coding(header: str) -> str | None:
    """The coding to answer in: the one of ours the client weighs highest (`q=0` refuses
    it), brotli on a tie; None if it takes neither."""
    weights = _weights(header)
    best, best_q = None, 0.0
    for coding in _COMPRESS:
        q = weights.get(coding, weights.get("*", 0.0))
        if q > best_q:
            best, best_q = coding, q
    return best


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header admits gzip."""
    weights = _weights(header)
    return weights.get("gzip", weights.get("*", 0.0)) > 0


async def maybe_compress(request: web.Request, resp: web.StreamResponse) -> None:
    """Compress `resp` in place if it is a client-API JSON body worth compressing and the
    client accepts brotli or gzip. Responses streamed already (media) are left alone."""
    if (not isinstance(resp, web.Response) or resp.prepared
            or not request.path.startswith(CLIENT_PREFIX)
            or resp.content_type != "application/json"
            or "Content-Encoding" in resp.headers):
        return
    body = resp.body
    if not isinstance(body, bytes) or len(body) < MIN_BYTES:
        return  # the same answer whatever the client accepts: no Vary either
    resp.headers["Vary"] = "Accept-Encoding"
    coding = choose_coding(request.headers.get("Accept-Encoding", ""))
    if coding is None:
        return
    compress = _COMPRESS[coding]
    if len(body) >= THREAD_BYTES:
        resp.body = await asyncio.to_thread(compress, body)
    else:
        resp.body = compress(body)
    resp.headers["Content-Encoding"] = coding
