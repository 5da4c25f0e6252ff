"""Identifier grammar (appendices, "Identifier Grammar"): server names, user IDs, room IDs,
room aliases and event IDs.

Two user ID checks exist on purpose: the strict grammar is what this server may *create*
(registration), while the historical grammar is what every server MUST still *accept* in
events over federation.
"""

from __future__ import annotations

import ipaddress
import re

from veche.core.room_versions import RoomVersion

MAX_IDENTIFIER_BYTES = 255

_PORT = re.compile(r"[0-9]{1,5}")
_IPV4 = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DNS_NAME = re.compile(r"[0-9A-Za-z.-]{1,255}")
_STRICT_LOCALPART = re.compile(r"[a-z0-9._=/+-]+")
# 32-byte sha256 digest in URL-safe unpadded base64 is always 43 characters.
_REFERENCE_HASH = re.compile(r"[A-Za-z0-9_-]{43}")


class InvalidIdentifier(ValueError):
    """An identifier does not match the grammar; the message says which part."""


def _fits(identifier: str) -> bool:
    try:
        return len(identifier.encode("utf-8")) <= MAX_IDENTIFIER_BYTES
    except UnicodeEncodeError:  # lone surrogates are not valid code points
        return False


def parse_server_name(server_name: str) -> tuple[str, int | None]:
    """Split `host[:port]`; raise InvalidIdentifier unless it matches the server_name grammar."""
    if server_name.startswith("["):
        end = server_name.find("]")
        if end < 0:
            raise InvalidIdentifier(f"unterminated IPv6 literal in {server_name!r}")
        host, rest = server_name[: end + 1], server_name[end + 1 :]
        literal = host[1:-1]
        if not _IPV6_CHARS.fullmatch(literal):
            raise InvalidIdentifier(f"bad IPv6 literal in {server_name!r}")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise InvalidIdentifier(f"bad IPv6 literal in {server_name!r}") from None
    else:
        host, sep, port_text = server_name.partition(":")
        rest = sep + port_text
        if _IPV4.fullmatch(host):
            if any(int(part) > 255 for part in host.split(".")):
                raise InvalidIdentifier(f"bad IPv4 literal in {server_name!r}")
        elif not _DNS_NAME.fullmatch(host):
            raise InvalidIdentifier(f"bad hostname in {server_name!r}")
    if not rest:
        return host, None
    if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]):
        raise InvalidIdentifier(f"bad port in {server_name!r}")
    return host, int(rest[1:])


def is_valid_server_name(server_name: str) -> bool:
    try:
        parse_server_name(server_name)
    except InvalidIdentifier:
        return False
    return True


def is_valid_localpart(localpart: str) -> bool:
    """The user ID localpart grammar for IDs this server creates: 1*[a-z0-9._=/+-]."""
    return bool(_STRICT_LOCALPART.fullmatch(localpart))


def is_historical_localpart(localpart: str) -> bool:
    """Localparts servers must still accept: any code point but `:` and NUL, even empty."""
    return ":" not in localpart and "\x00" not in localpart


def _split_sigil_id(identifier: str, sigil: str, what: str) -> tuple[str, str]:
    if not identifier.startswith(sigil):
        raise InvalidIdentifier(f"{what} must start with {sigil!r}")
    if not _fits(identifier):
        raise InvalidIdentifier(f"{what} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    localpart, sep, server_name = identifier[1:].partition(":")
    if not sep:
        raise InvalidIdentifier(f"{what} has no server name")
    parse_server_name(server_name)
    return localpart, server_name


def parse_user_id(user_id: str, *, strict: bool = False) -> tuple[str, str]:
    """Return (localpart, server_name) of `@localpart:server_name`.

    `strict=True` applies the grammar for new registrations; the default accepts historical
    user IDs, as the spec requires for events received over federation.
    """
    localpart, server_name = _split_sigil_id(user_id, "@", "user ID")
    valid = is_valid_localpart(localpart) if strict else is_historical_localpart(localpart)
    if not valid:
        raise InvalidIdentifier(f"bad user ID localpart in {user_id!r}")
    return localpart, server_name


def is_valid_user_id(user_id: object, *, strict: bool = False) -> bool:
    if not isinstance(user_id, str):
        return False
    try:
        parse_user_id(user_id, strict=strict)
    except InvalidIdentifier:
        return False
    return True


def server_name_of(identifier: str) -> str:
    """The domain of a `&localpart:domain` identifier; "" when it has none (v12 room IDs)."""
    return identifier.partition(":")[2]


def is_valid_room_alias(alias: object) -> bool:
    if not isinstance(alias, str):
        return False
    try:
        localpart, _ = _split_sigil_id(alias, "#", "room alias")
    except InvalidIdentifier:
        return False
    return is_historical_localpart(localpart)


def _is_reference_hash_id(identifier: str, sigil: str) -> bool:
    return identifier.startswith(sigil) and bool(_REFERENCE_HASH.fullmatch(identifier[1:]))


def _is_domain_id(identifier: str, sigil: str, what: str) -> bool:
    try:
        localpart, _ = _split_sigil_id(identifier, sigil, what)
    except InvalidIdentifier:
        return False
    return bool(localpart) and is_historical_localpart(localpart)


def is_valid_room_id(room_id: object, room_version: RoomVersion | None = None) -> bool:
    """`!opaque:domain` (v1-11) or `!<create event reference hash>` (v12).

    Without a room version either form is accepted.
    """
    if not isinstance(room_id, str):
        return False
    hashed = _is_reference_hash_id(room_id, "!")
    if room_version is not None and room_version.room_id_is_create_event_hash:
        return hashed
    domain = _is_domain_id(room_id, "!", "room ID")
    return domain if room_version is not None else domain or hashed


def is_valid_event_id(event_id: object, room_version: RoomVersion | None = None) -> bool:
    """`$<reference hash>` (v4+); without a room version the v1-3 `$opaque:domain` is accepted."""
    if not isinstance(event_id, str):
        return False
    if _is_reference_hash_id(event_id, "$"):
        return True
    if room_version is not None and room_version.event_id_is_reference_hash:
        return False
    return _is_domain_id(event_id, "$", "event ID")
