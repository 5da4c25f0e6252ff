"""The outbound federation client: every request goes to the target the server name
resolves to, over TLS with SNI and `Host` as the spec says, signed with X-Matrix, and only
to servers the configuration allows ([federation] enabled, domain_allowlist) on addresses it
allows (ip_range_allowlist; private and loopback ranges are refused otherwise)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import dns.asyncresolver
import orjson
from signedjson.key import SigningKey
from yarl import URL

from veche.config import FederationConfig
from veche.core.federation_auth import sign_request
from veche.core.identifiers import InvalidIdentifier
from veche.core.server_discovery import WELL_KNOWN_MAX_BYTES, Target
from veche.federation.dns import DnsPythonResolver, lookup_srv, system_resolver
from veche.federation.errors import (  # noqa: F401  (re-exported)
    FederationDenied,
    FederationError,
    HttpResponseError,
    Unreachable,
    path,
)
from veche.federation.resolver import ServerResolver
from veche.outbound import AddressPolicy, FilteringConnector

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
USER_AGENT = "Veche federation"


def make_ssl_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class FederationClient:
    def __init__(self, server_name: str, signing_key: SigningKey, config: FederationConfig, *,
                 dns_resolver: dns.asyncresolver.Resolver | None = None,
                 https_port: int = 443, federation_port: int = 8448,
                 timeout_s: float = 60.0) -> None:
        """`dns_resolver`: answers SRV and, when given, A/AAAA lookups too (tests use a local
        DNS server). `https_port` and `federation_port` are the spec's 443 and 8448 except in
        tests on loopback."""
        self.server_name = server_name
        self.signing_key = signing_key
        self.config = config
        self.https_port = https_port
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 10.0))
        self._dns = dns_resolver
        self._dns_loaded = dns_resolver is not None
        self._session: aiohttp.ClientSession | None = None
        self._ssl = make_ssl_context(config.ca_file)
        self._policy = AddressPolicy(config.ip_range_allowlist, [])
        self.resolver = ServerResolver(self._fetch_well_known, self._lookup_srv,
                                       federation_port=federation_port)

    # --- policy ---------------------------------------------------------------------
    def allowed(self, server_name: str) -> bool:
        allow = self.config.domain_allowlist
        return self.config.enabled and (not allow or server_name in allow)

    def _check(self, destination: str) -> None:
        if not self.config.enabled:
            raise FederationDenied("federation is disabled on this server")
        if destination == self.server_name:
            raise FederationDenied("refusing to send a federation request to ourselves")
        if not self.allowed(destination):
            raise FederationDenied(f"{destination} is not in [federation] domain_allowlist")

    # --- transport ------------------------------------------------------------------
    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            inner = DnsPythonResolver(self._dns) if self._dns is not None else None
            connector = FilteringConnector(self._policy, inner_resolver=inner, ssl=self._ssl,
                                           limit=200, limit_per_host=8,
                                           ttl_dns_cache=60, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, auto_decompress=True,
                headers={"User-Agent": USER_AGENT}, skip_auto_headers=("Content-Type",))
        return self._session

    async def _lookup_srv(self, name: str) -> list[Any]:
        if not self._dns_loaded:
            self._dns = await asyncio.to_thread(system_resolver)
            self._dns_loaded = True
        return await lookup_srv(self._dns, name)

    async def _fetch_well_known(self, host: str) -> tuple[int, bytes, str | None]:
        port = "" if self.https_port == 443 else f":{self.https_port}"
        url = f"https://{host}{port}/.well-known/matrix/server"
        async with self._get_session().get(
                url, timeout=aiohttp.ClientTimeout(total=10), max_redirects=10) as resp:
            if resp.url.scheme != "https":  # redirected to plain HTTP: not believed
                return 0, b"", None
            body = await _read_limited(resp, WELL_KNOWN_MAX_BYTES)
            return resp.status, body, resp.headers.get("Cache-Control")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # --- requests -------------------------------------------------------------------
    async def request(self, method: str, destination: str, target: str, content: Any = None, *,
                      signed: bool = True, max_bytes: int = MAX_RESPONSE_BYTES,
                      timeout_s: float | None = None) -> Any:
        """Send `method target` (an encoded path and query, see `path`) to `destination`;
        the parsed JSON answer, or FederationError."""
        self._check(destination)
        try:
            targets = await self.resolver.resolve(destination)
        except InvalidIdentifier as e:
            raise FederationError(f"not a server name: {e}") from None
        headers = {}
        if signed:
            headers["Authorization"] = sign_request(self.signing_key, self.server_name,
                                                    destination, method, target, content)
        body = None
        if content is not None:
            body = orjson.dumps(content)
            headers["Content-Type"] = "application/json"
        last: Exception | None = None
        for t in targets:
            try:
                return await self._send(t, method, target, headers, body, destination,
                                        max_bytes, timeout_s)
            except HttpResponseError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
                logger.info("federation %s %s to %s via %s:%s failed: %s", method, target,
                            destination, t.connect_host, t.port, e)
                last = e
        raise Unreachable(f"{destination}: {last}")

    async def _send(self, t: Target, method: str, target: str, headers: dict[str, str],
                    body: bytes | None, destination: str, max_bytes: int,
                    timeout_s: float | None) -> Any:
        host = f"[{t.connect_host}]" if ":" in t.connect_host else t.connect_host
        url = URL(f"https://{host}:{t.port}{target}", encoded=True)
        timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else None
        async with self._get_session().request(
                method, url, data=body, headers={**headers, "Host": t.host_header},
                server_hostname=t.tls_name, allow_redirects=False, timeout=timeout) as resp:
            raw = await _read_limited(resp, max_bytes)
            try:
                parsed = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                parsed = None
            if resp.status != 200:
                raise HttpResponseError(destination, resp.status, parsed)
            if not isinstance(parsed, dict):
                raise ValueError(f"{destination} answered with no JSON object")
            return parsed

    @contextlib.asynccontextmanager
    async def stream(self, destination: str, target: str,
                     timeout: aiohttp.ClientTimeout) -> AsyncIterator[aiohttp.ClientResponse]:
        """A signed GET whose answer, whatever its status, the caller reads as it arrives:
        for bodies too big to hold, such as media. FederationError when no target answers."""
        self._check(destination)
        try:
            targets = await self.resolver.resolve(destination)
        except InvalidIdentifier as e:
            raise FederationError(f"not a server name: {e}") from None
        auth = sign_request(self.signing_key, self.server_name, destination, "GET", target, None)
        last: Exception | None = None
        for t in targets:
            host = f"[{t.connect_host}]" if ":" in t.connect_host else t.connect_host
            url = URL(f"https://{host}:{t.port}{target}", encoded=True)
            try:
                resp = await self._get_session().get(
                    url, headers={"Authorization": auth, "Host": t.host_header},
                    server_hostname=t.tls_name, allow_redirects=False, timeout=timeout)
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
                logger.info("federation GET %s to %s via %s:%s failed: %s", target, destination,
                            t.connect_host, t.port, e)
                last = e
                continue
            async with _dropped_on_error(resp):
                yield resp
            return
        raise Unreachable(f"{destination}: {last}")

    @contextlib.asynccontextmanager
    async def stream_url(self, url: str,
                         timeout: aiohttp.ClientTimeout) -> AsyncIterator[aiohttp.ClientResponse]:
        """An unsigned GET of a URL a peer pointed to (a media redirect), on the same terms
        as federation requests: only with federation on, only to addresses allowed."""
        if not self.config.enabled:
            raise FederationDenied("federation is disabled on this server")
        if URL(url).scheme not in ("http", "https"):
            raise FederationError(f"not an HTTP URL: {url}")
        try:
            resp = await self._get_session().get(url, timeout=timeout, max_redirects=5)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            raise Unreachable(f"{url}: {e}") from None
        async with _dropped_on_error(resp):
            yield resp

    async def get_json(self, destination: str, target: str, **kwargs: Any) -> Any:
        return await self.request("GET", destination, target, **kwargs)

    async def put_json(self, destination: str, target: str, content: Any, **kwargs: Any) -> Any:
        return await self.request("PUT", destination, target, content, **kwargs)

    async def post_json(self, destination: str, target: str, content: Any, **kwargs: Any) -> Any:
        return await self.request("POST", destination, target, content, **kwargs)


@contextlib.asynccontextmanager
async def _dropped_on_error(resp: aiohttp.ClientResponse) -> AsyncIterator[None]:
    """Release the response after use; when the reader stopped early (an error, a body
    over its limit), close the connection rather than read the rest to reuse it."""
    try:
        yield
    except BaseException:
        resp.close()
        raise
    finally:
        resp.release()


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise ValueError(f"response of {resp.content_length} bytes is over {limit}")
    chunks = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise ValueError(f"response is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
