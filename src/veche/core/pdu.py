"""PDUs received from other servers: the format of their room version, the servers whose
signatures they need, the signature and hash checks (server-server API "Checks performed on
receipt of a PDU", "Validating hashes and signatures on received events"), and the form in
which stored events are sent out again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nacl.signing import VerifyKey

from veche.core.events import (
    CANONICAL_INT_MAX,
    EventFormatError,
    check_canonical_json,
    check_content_hash,
    check_event_size_limits,
    compute_event_id,
    room_id_from_create_event_id,
    signing_input,
    verify_event_signature,
)
from veche.core.federation_pdus import is_v12_create
from veche.core.identifiers import (
    InvalidIdentifier,
    is_valid_event_id,
    is_valid_room_id,
    parse_user_id,
    server_name_of,
)
from veche.core.redaction import redact_event
from veche.core.room_versions import RoomVersion

# The PDU schemas' limits (auth_events_prev_events_v4.yaml).
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10

KeyLookup = Mapping[tuple[str, str], VerifyKey]


class PduError(ValueError):
    """The PDU is not a valid event of its room version: it is dropped."""


def _id_list(rv: RoomVersion, event: Mapping[str, Any], key: str, limit: int | None) -> None:
    value = event.get(key)
    if not isinstance(value, list):
        raise PduError(f"{key} must be a list")
    if limit is not None and len(value) > limit:
        raise PduError(f"{key} holds {len(value)} event IDs, more than {limit}")
    if not all(is_valid_event_id(e, rv) for e in value):
        raise PduError(f"{key} holds something that is not an event ID")


def check_pdu_format(rv: RoomVersion, pdu: Mapping[str, Any], *, limits: bool = True) -> None:
    """Raise PduError unless `pdu` has the event format of room version `rv`.

    `limits=False` skips the prev/auth event counts, which /backfill answers must not be
    held to (events accepted long ago may exceed them).
    """
    for key, kind in (("type", str), ("sender", str), ("content", dict), ("hashes", dict),
                      ("signatures", dict)):
        if not isinstance(pdu.get(key), kind):
            raise PduError(f"{key} is missing or not a {kind.__name__}")
    for key in ("origin_server_ts", "depth"):
        value = pdu.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise PduError(f"{key} is missing or not an integer")
    if not 0 <= pdu["depth"] <= CANONICAL_INT_MAX:
        raise PduError("depth is out of range")
    if "state_key" in pdu and not isinstance(pdu["state_key"], str):
        raise PduError("state_key must be a string")
    if "unsigned" in pdu and not isinstance(pdu["unsigned"], dict):
        raise PduError("unsigned must be an object")
    if not isinstance(pdu["hashes"].get("sha256"), str):
        raise PduError("hashes.sha256 is missing")
    for server, sigs in pdu["signatures"].items():
        if not isinstance(sigs, dict) or not all(isinstance(s, str) for s in sigs.values()):
            raise PduError(f"signatures of {server} are not a map of strings")
    try:
        parse_user_id(pdu["sender"])
    except InvalidIdentifier as e:
        raise PduError(f"sender: {e}") from None
    if is_v12_create(pdu, rv):
        if "room_id" in pdu:
            raise PduError("a v12 m.room.create event has no room_id")
    elif not is_valid_room_id(pdu.get("room_id"), rv):
        raise PduError("room_id is missing or not a room ID of this room version")
    _id_list(rv, pdu, "prev_events", MAX_PREV_EVENTS if limits else None)
    _id_list(rv, pdu, "auth_events", MAX_AUTH_EVENTS if limits else None)
    try:
        if rv.strict_canonical_json:
            check_canonical_json(dict(pdu))
        check_event_size_limits(pdu)
    except EventFormatError as e:
        raise PduError(str(e)) from None


def with_event_id(rv: RoomVersion, pdu: Mapping[str, Any]) -> dict[str, Any]:
    """The PDU as stored here: its event ID (the reference hash) added, any `event_id` it
    came with ignored, and a v12 create event given the room ID it defines."""
    event = {k: v for k, v in pdu.items() if k != "event_id"}
    event["event_id"] = compute_event_id(event, rv)
    if is_v12_create(event, rv):
        event["room_id"] = room_id_from_create_event_id(event["event_id"])
    return event


def required_signers(rv: RoomVersion, event: Mapping[str, Any]) -> set[str]:
    """Servers whose signature the event must carry: the sender's (not for an invite made
    through a third-party invite, which another server may send), and for a restricted join
    the server of the user who authorised it."""
    content = event.get("content")
    content = content if isinstance(content, Mapping) else {}
    servers = set()
    is_member = event.get("type") == "m.room.member"
    if not (is_member and content.get("membership") == "invite"
            and isinstance(content.get("third_party_invite"), Mapping)):
        servers.add(server_name_of(str(event.get("sender", ""))))
    via = content.get("join_authorised_via_users_server")
    if (is_member and content.get("membership") == "join" and rv.restricted_join_rule
            and isinstance(via, str)):
        servers.add(server_name_of(via))
    return servers


def signature_key_ids(event: Mapping[str, Any], server: str) -> list[str]:
    """The ed25519 key IDs `server` signed the event with (other algorithms are skipped)."""
    signatures = event.get("signatures")
    ours = signatures.get(server) if isinstance(signatures, Mapping) else None
    if not isinstance(ours, Mapping):
        return []
    return [k for k in ours if isinstance(k, str) and k.startswith("ed25519:")]


def check_signatures(rv: RoomVersion, event: Mapping[str, Any], keys: KeyLookup,
                     signed: bytes | None = None) -> None:
    """Raise PduError unless every required server signed the event and each of its
    signatures with a key in `keys` (the known keys valid at the event's time) verifies.
    `event` is the PDU as received (`pdu_for_federation` of a stored one); `signed`: what
    its signatures sign, if known already (core.events.signing_input)."""
    for server in sorted(required_signers(rv, event)):
        known = [k for k in signature_key_ids(event, server) if (server, k) in keys]
        if not known:
            raise PduError(f"not signed by {server} with a key known here")
        if signed is None:
            signed = signing_input(event, rv)
        for key_id in known:
            if not verify_event_signature(event, server, keys[(server, key_id)], rv, key_id,
                                          signed):
                raise PduError(f"bad signature by {server} with {key_id}")


def checked_content(rv: RoomVersion, pdu: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The PDU (as received) to go on with and whether its content hash held: a mismatch
    means only the redacted form can be trusted, so that is what is kept."""
    if check_content_hash(pdu):
        return pdu, True
    return redact_event(pdu, rv), False
