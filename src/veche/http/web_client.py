"""The web client at `/`: the built files of web/ ([web_client] enabled), index.html for the
client's own routes. Never answers for the Matrix APIs, whose unknown paths stay M_UNRECOGNIZED."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from veche.http.base import hs_of
from veche.web_client import DIST

routes = web.RouteTableDef()

# Every type the build emits; .wasm must be application/wasm or browsers refuse to stream it.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

# The page loads only what this server serves; it may talk to another homeserver if the user
# points it there (connect-src); wasm-unsafe-eval lets the Rust crypto (WebAssembly) compile.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' blob: data:; media-src 'self' blob:; connect-src *; worker-src 'self'; "
       "manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

NOT_THE_CLIENT = ("_matrix/", "_synapse/", ".well-known/")


def _headers(path: Path) -> dict[str, str]:
    headers = {
        "Content-Type": MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if path.parent.name == "assets":
        # Content-hashed names: a new build has new names, so these never change.
        headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        # index.html, sw.js, the manifest: always revalidated, so an upgrade shows at once.
        headers["Cache-Control"] = "no-cache"
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CSP
    return headers


def _file_for(tail: str) -> Path | None:
    if not tail:
        return DIST / "index.html"
    candidate = (DIST / tail).resolve()
    if DIST.resolve() not in candidate.parents or not candidate.is_file():
        return None
    return candidate


@routes.get(r"/{tail:(?!_matrix/|_synapse/|\.well-known/).*}")
async def web_client(request: web.Request) -> web.StreamResponse:
    tail = request.match_info["tail"]
    if not hs_of(request).config.web_client.enabled:
        if not tail:
            return web.Response(text="Veche Matrix homeserver is running.\n")
        raise web.HTTPNotFound()
    path = _file_for(tail)
    if path is None:
        # A file that is not there (an old asset, a typo) is a 404; any other path is one of
        # the client's own routes, which the client itself resolves.
        if tail.startswith("assets/") or "." in tail.rsplit("/", 1)[-1]:
            raise web.HTTPNotFound()
        path = DIST / "index.html"
    if not path.is_file():
        return web.Response(status=503, text="The web client is not built: run `npm ci && npm run build` in web/.\n")
    return web.FileResponse(path, headers=_headers(path))
