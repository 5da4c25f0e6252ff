"""What federation requests raise, and how their targets are spelled: kept apart from the
client so that the services can name them without loading the client (and dnspython) in a
server that never federates."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode


class FederationError(Exception):
    """A federation request could not be made or did not succeed."""


class FederationDenied(FederationError):
    """The configuration does not allow federating with this server."""


class Unreachable(FederationError):
    """No target of the server answered."""


class HttpResponseError(FederationError):
    def __init__(self, destination: str, status: int, body: Any) -> None:
        errcode = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{destination} answered {status} {errcode or ''}".rstrip())
        self.status = status
        self.body = body
        self.errcode = errcode


def path(template: str, *parts: str, query: dict[str, Any] | None = None) -> str:
    """A request target: `template` with each `{}` filled by a percent-encoded part."""
    target = template.format(*(quote(p, safe="") for p in parts))
    if query:
        target += "?" + urlencode(query, doseq=True)
    return target
