"""Request authentication between servers (server-server API "Request Authentication").

A request's method, target, origin, destination and JSON body are signed as one JSON object
with the origin's ed25519 key; the signature travels in `Authorization: X-Matrix ...`.
The target is the request target exactly as sent on the wire — path and query, still
percent-encoded — since that is what the sender signed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from signedjson.types import SigningKey, VerifyKey

# RFC 9110 tchar; unquoted values may also hold ':' (older servers) and, leniently, '/' and
# '=' of base64 signatures that some senders leave unquoted.
_TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_UNQUOTED = _TCHAR | set(":/=[]")
_SPACE = " \t"


class XMatrixError(ValueError):
    """The Authorization header is not a usable X-Matrix one; the message says why."""


@dataclass(frozen=True)
class XMatrix:
    origin: str
    key: str
    sig: str
    destination: str | None = None


_TOKEN_RE = re.compile("[" + re.escape("".join(sorted(_TCHAR))) + "]*")
_UNQUOTED_RE = re.compile("[" + re.escape("".join(sorted(_UNQUOTED))) + "]*")
_SPACE_RE = re.compile("[ \t]*")


def _skip(text: str, i: int) -> int:
    return _SPACE_RE.match(text, i).end()  # type: ignore[union-attr]


def _quoted(text: str, i: int) -> tuple[str, int]:
    """The quoted-string starting at text[i] == '"', unescaped, and the index past it."""
    end = text.find('"', i + 1)
    if end >= 0 and text.find("\\", i + 1, end) < 0:
        return text[i + 1:end], end + 1  # nothing escaped: every header we see
    out = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise XMatrixError("unterminated quoted value")


def parse_params(text: str) -> dict[str, str]:
    """`name=value` pairs separated by commas (RFC 9110 auth-param); names lower-cased."""
    params: dict[str, str] = {}
    i = _skip(text, 0)
    while i < len(text):
        start = i
        i = _TOKEN_RE.match(text, i).end()  # type: ignore[union-attr]
        name = text[start:i].lower()
        if not name:
            raise XMatrixError(f"expected a parameter name at {text[i:i + 10]!r}")
        i = _skip(text, i)
        if i >= len(text) or text[i] != "=":
            raise XMatrixError(f"parameter {name} has no value")
        i = _skip(text, i + 1)
        if i < len(text) and text[i] == '"':
            value, i = _quoted(text, i)
        else:
            start = i
            i = _UNQUOTED_RE.match(text, i).end()  # type: ignore[union-attr]
            value = text[start:i]
            if not value:
                raise XMatrixError(f"parameter {name} has an empty value")
        if name in params:
            raise XMatrixError(f"parameter {name} given twice")
        params[name] = value
        i = _skip(text, i)
        if i < len(text):
            if text[i] != ",":
                raise XMatrixError(f"expected ',' after parameter {name}")
            i = _skip(text, i + 1)
    return params


def parse_x_matrix(header: str) -> XMatrix:
    scheme, sep, rest = header.partition(" ")
    if scheme.lower() != "x-matrix" or not sep:
        raise XMatrixError("not an X-Matrix authorization")
    params = parse_params(rest)
    missing = [p for p in ("origin", "key", "sig") if not params.get(p)]
    if missing:
        raise XMatrixError(f"missing {', '.join(missing)}")
    return XMatrix(origin=params["origin"], key=params["key"], sig=params["sig"],
                   destination=params.get("destination"))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_x_matrix(auth: XMatrix) -> str:
    # One space, lower-case names, no spaces around commas: what older servers parse.
    fields = [("origin", auth.origin)]
    if auth.destination is not None:
        fields.append(("destination", auth.destination))
    fields += [("key", auth.key), ("sig", auth.sig)]
    return "X-Matrix " + ",".join(f"{name}={_quote(value)}" for name, value in fields)


def request_json(method: str, uri: str, origin: str, destination: str,
                 content: Any = None) -> dict[str, Any]:
    """The object whose signature authenticates a request (`content` left out when None)."""
    obj: dict[str, Any] = {"method": method, "uri": uri, "origin": origin,
                           "destination": destination}
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(signing_key: SigningKey, origin: str, destination: str, method: str,
                 uri: str, content: Any = None) -> str:
    """The Authorization header value for a request from `origin` to `destination`."""
    signed = sign_json(request_json(method, uri, origin, destination, content), origin,
                       signing_key)
    key_id = f"{signing_key.alg}:{signing_key.version}"
    sig = signed["signatures"][origin][key_id]
    return build_x_matrix(XMatrix(origin=origin, destination=destination, key=key_id, sig=sig))


def verify_request(auth: XMatrix, verify_key: VerifyKey, method: str, uri: str,
                   destination: str, content: Any = None) -> bool:
    """Whether `auth.sig` signs this request with `verify_key` (the origin's `auth.key`)."""
    obj = request_json(method, uri, auth.origin, destination, content)
    obj["signatures"] = {auth.origin: {auth.key: auth.sig}}
    try:
        verify_signed_json(obj, auth.origin, verify_key)
    except SignatureVerifyException:
        return False
    return True
