"""Collects the `routes` table of every endpoint module in this package."""

from __future__ import annotations

import importlib
import pkgutil

from aiohttp import web

import veche.http


def all_routes() -> list[web.RouteTableDef]:
    tables = []
    for info in sorted(pkgutil.iter_modules(veche.http.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"veche.http.{info.name}")
        routes = getattr(module, "routes", None)
        if isinstance(routes, web.RouteTableDef):
            tables.append(routes)
    return tables
