"""URL previews (OpenGraph). Off unless configured; fetched through veche.outbound's
SSRF-guarded connector."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from veche.errors import MatrixError, forbidden
from veche.outbound import AddressPolicy, BlockedAddress, FilteringConnector, FilteringResolver
from veche.storage import media as store_sql

if TYPE_CHECKING:
    from veche.server import HomeServer

CACHE_MS = 3600 * 1000
MAX_REDIRECTS = 5
MAX_OG_VALUE = 1000


class _OpenGraphParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.og: dict[str, str] = {}
        self.title: str | None = None
        self.description: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        if tag == "meta":
            key = a.get("property") or a.get("name") or ""
            content = a.get("content")
            if content is None:
                return
            if key.startswith("og:") and key not in self.og and len(self.og) < 50:
                self.og[key[:100]] = content[:MAX_OG_VALUE]
            elif key == "description" and self.description is None:
                self.description = content[:MAX_OG_VALUE]
        elif tag == "title" and self.title is None:
            self._in_title = True
            self.title = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title and self.title is not None and len(self.title) < MAX_OG_VALUE:
            self.title += data


def parse_html(raw: bytes, charset: str | None) -> dict[str, Any]:
    try:
        text = raw.decode(charset or "utf-8", errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    parser = _OpenGraphParser()
    parser.feed(text)
    parser.close()
    og: dict[str, Any] = dict(parser.og)
    if "og:title" not in og and parser.title:
        og["og:title"] = parser.title.strip()
    if "og:description" not in og and parser.description:
        og["og:description"] = parser.description
    return og


class UrlPreviewer:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.config = hs.config.media.url_preview
        self.policy = AddressPolicy(self.config.ip_range_allowlist, self.config.ip_range_blacklist)

    async def preview(self, user_id: str, url: str) -> dict[str, Any]:
        if not self.config.enabled:
            raise MatrixError(404, "M_UNRECOGNIZED", "URL previews are disabled on this server")
        self.hs.ratelimiter.check("media_upload", user_id)
        split = urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname or len(url) > 2000:
            raise MatrixError(400, "M_INVALID_PARAM", "url must be an http(s) URL")
        now = int(time.time() * 1000)
        cached = await self.hs.db.run(store_sql.get_preview, url, now - CACHE_MS)
        if cached is not None:
            return orjson.loads(cached)  # type: ignore[no-any-return]
        og = await self._fetch(url)
        await self.hs.db.run(store_sql.put_preview, url, now, orjson.dumps(og).decode())
        return og

    async def check_target(self, url: str) -> None:
        """Refuse a URL whose host is, or resolves only to, a refused address — before any
        packet is sent to it."""
        split = urlsplit(url)
        host = split.hostname
        if split.scheme not in ("http", "https") or not host:
            raise forbidden("URL target is not allowed")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            try:
                await FilteringResolver(self.policy).resolve(host, split.port or 0, socket.AF_UNSPEC)
            except BlockedAddress:
                raise forbidden("URL target is not allowed") from None
            except OSError:
                raise MatrixError(502, "M_UNKNOWN", "Could not resolve the URL's host") from None
            return
        if not self.policy.allowed(ip):
            raise forbidden("URL target is not allowed")

    async def _fetch(self, url: str) -> dict[str, Any]:
        connector = FilteringConnector(self.policy, use_dns_cache=False, force_close=True)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                         headers={"User-Agent": "Veche URL preview"}) as session:
            try:
                for _ in range(MAX_REDIRECTS + 1):
                    await self.check_target(url)
                    async with session.get(url, allow_redirects=False) as resp:
                        if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                            url = urljoin(url, resp.headers["Location"])
                            continue
                        if resp.status != 200:
                            raise MatrixError(502, "M_UNKNOWN", f"URL answered {resp.status}")
                        return await self._read(resp)
            except (TimeoutError, aiohttp.ClientError, OSError):
                raise MatrixError(502, "M_UNKNOWN", "Could not fetch the URL") from None
        raise MatrixError(502, "M_UNKNOWN", "Too many redirects")

    async def _read(self, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        limit = self.config.max_response_bytes
        if (resp.content_length or 0) > limit:
            raise MatrixError(502, "M_TOO_LARGE", "Linked content is too large")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise MatrixError(502, "M_TOO_LARGE", "Linked content is too large")
        ctype = resp.content_type
        if ctype in ("text/html", "application/xhtml+xml"):
            return await asyncio.to_thread(parse_html, bytes(body), resp.charset)
        return {"og:url": str(resp.url)} if ctype.startswith("image/") else {}
