"""Services hold the server's logic between the HTTP layer and storage."""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    """Import every service module (they register their stream tables on import)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
