"""Extra steps of the spec-conformance walk, one module per spec module.

Each module here defines `async def walk(ctx: WalkContext) -> None` that calls every endpoint
its spec module implements with a valid request; tests/test_spec_conformance.py runs them all
after its own steps, and the test client validates each response against the spec.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


def q(value: str) -> str:
    return quote(value, safe="")


@dataclass
class WalkContext:
    homeserver: Any  # tests.conftest.ServerProcess
    make_client: Callable[..., Any]
    alice: Any
    bob: Any
    room_id: str  # a room both alice and bob are joined to

    @staticmethod
    async def ok(result: tuple[int, Any]) -> Any:
        status, body = result
        assert 200 <= status < 300, body
        return body


def all_walks() -> list[Callable[[WalkContext], Awaitable[None]]]:
    walks = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        walks.append(module.walk)
    return walks
