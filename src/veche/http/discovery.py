"""Server discovery: /versions, .well-known (spec: client-server API "Server Discovery")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from veche import __version__
from veche.errors import not_found
from veche.http.base import hs_of, json_response

routes = web.RouteTableDef()

SUPPORTED_VERSIONS = [
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9",
    "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15",
]


@routes.get("/_matrix/client/versions")
async def versions(request: web.Request) -> web.Response:
    return json_response({
        "versions": SUPPORTED_VERSIONS,
        "unstable_features": {
            "org.matrix.msc3575": False,
            "org.matrix.e2e_cross_signing": True,
            "org.matrix.msc2285.stable": True,
            "org.matrix.msc3440.stable": True,
            "org.matrix.msc3771": True,
            "org.matrix.msc3773": True,
            "org.matrix.msc3814": True,
            "org.matrix.simplified_msc3575": True,
        },
        "server": {"name": "veche", "version": __version__},
    })


@routes.get("/.well-known/matrix/client")
async def well_known_client(request: web.Request) -> web.Response:
    base = hs_of(request).config.base_url.rstrip("/")
    return json_response({"m.homeserver": {"base_url": base}})


@routes.get("/.well-known/matrix/server")
async def well_known_server(request: web.Request) -> web.Response:
    # Delegation only when configured: without it other servers go on to SRV and port 8448.
    federation = hs_of(request).config.federation
    if not federation.enabled or not federation.well_known_server:
        raise not_found("This server does not delegate federation")
    return json_response({"m.server": federation.well_known_server})


@routes.get("/.well-known/matrix/support")
async def well_known_support(request: web.Request) -> web.Response:
    support = hs_of(request).config.support
    if not support.contacts and not support.support_page:
        raise not_found("No support contacts are published for this server")
    out: dict[str, Any] = {}
    if support.contacts:
        out["contacts"] = [{k: v for k, v in c.model_dump().items() if v}
                           for c in support.contacts]
    if support.support_page:
        out["support_page"] = support.support_page
    return json_response(out)
