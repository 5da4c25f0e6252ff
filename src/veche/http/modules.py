"""Collects the `routes` (and `federation_routes`) tables of every endpoint module here."""

from __future__ import annotations

import importlib
import pkgutil

from aiohttp import web

import veche.http


def all_routes(attribute: str = "routes") -> list[web.RouteTableDef]:
    tables = []
    for info in sorted(pkgutil.iter_modules(veche.http.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"veche.http.{info.name}")
        routes = getattr(module, attribute, None)
        if isinstance(routes, web.RouteTableDef):
            tables.append(routes)
    return tables


def federation_routes() -> list[web.RouteTableDef]:
    """The server-server and key APIs (`federation_routes` tables): only with federation on."""
    return all_routes("federation_routes")
