"""The OpenAPI response-validation harness itself works against the spec checkout."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.spec_schema import (
    concrete_path,
    find_operation,
    iter_operations,
    iter_response_examples,
    validate_response,
)

EXAMPLES = list(iter_response_examples())
REQUIRED_OPERATIONS = {
    ("GET", "/_matrix/client/versions"),
    ("GET", "/_matrix/client/v3/login"),
    ("POST", "/_matrix/client/v3/login"),
    ("POST", "/_matrix/client/v3/register"),
    ("GET", "/_matrix/client/v3/sync"),
    ("POST", "/_matrix/client/v3/createRoom"),
}


def _status(code: str) -> int:
    return int(code) if code.isdigit() else 200


def test_operations_are_discovered() -> None:
    ops = set(iter_operations())
    assert len(ops) > 150
    assert REQUIRED_OPERATIONS <= ops
    assert ("PUT", "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}") in ops
    assert ("GET", "/_matrix/media/v3/config") in ops
    assert ("GET", "/_matrix/client/v1/media/config") in ops
    assert ("GET", "/.well-known/matrix/client") in ops


def test_examples_exist_for_required_operations() -> None:
    covered = {(m, t) for m, t, status, _, _ in EXAMPLES if status.startswith("2")}
    assert REQUIRED_OPERATIONS <= covered, REQUIRED_OPERATIONS - covered
    assert len(EXAMPLES) > 200


@pytest.mark.parametrize(
    ("method", "template", "status", "name", "example"),
    EXAMPLES,
    ids=[f"{m} {t} {s} {n}" for m, t, s, n, _ in EXAMPLES],
)
def test_spec_examples_validate(method: str, template: str, status: str, name: str,
                                example: Any) -> None:
    validate_response(method, concrete_path(template), _status(status), example)


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("PUT", "/_matrix/client/v3/rooms/!abc:x/send/m.room.message/txn1",
         "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"),
        ("GET", "/_matrix/client/v3/rooms/!abc:x/state/m.room.name/",
         "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"),
        ("GET", "/_matrix/client/v3/rooms/!abc:x/state/m.room.name",
         "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}"),
        ("GET", "/_matrix/client/v3/rooms/!abc:x/state",
         "/_matrix/client/v3/rooms/{roomId}/state"),
        ("get", "/_matrix/client/v3/sync?since=s1&timeout=0", "/_matrix/client/v3/sync"),
        ("GET", "/_matrix/client/versions", "/_matrix/client/versions"),
        ("GET", "/_matrix/media/v3/download/example.org/abc",
         "/_matrix/media/v3/download/{serverName}/{mediaId}"),
        ("GET", "/_matrix/client/v1/media/download/example.org/abc",
         "/_matrix/client/v1/media/download/{serverName}/{mediaId}"),
        ("GET", "/_matrix/client/v1/rooms/!r:x/relations/$e:x/m.thread",
         "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}"),
        ("GET", "/_matrix/client/v3/rooms/!r:x/members", "/_matrix/client/v3/rooms/{roomId}/members"),
    ],
)
def test_path_matching(method: str, path: str, template: str) -> None:
    assert find_operation(method, path).template == template


def test_unknown_paths_raise_lookup_error() -> None:
    with pytest.raises(LookupError):
        validate_response("GET", "/_matrix/client/v3/definitely/not/a/thing", 200, {})
    with pytest.raises(LookupError, match="documented only for"):
        validate_response("DELETE", "/_matrix/client/v3/sync", 200, {})
    with pytest.raises(LookupError):
        # v3 sync exists, r0 is not a declared base path
        validate_response("GET", "/_matrix/client/r0/sync", 200, {})


def _example(method: str, template: str, status: str = "200") -> Any:
    for m, t, s, _, ex in EXAMPLES:
        if (m, t, s) == (method, template, status):
            return copy.deepcopy(ex)
    raise KeyError((method, template, status))


def test_corrupted_versions_body_fails() -> None:
    body = _example("GET", "/_matrix/client/versions")
    validate_response("GET", "/_matrix/client/versions", 200, body)
    body["versions"] = "v1.1"
    with pytest.raises(AssertionError, match="versions"):
        validate_response("GET", "/_matrix/client/versions", 200, body)


def test_missing_required_field_fails() -> None:
    body = _example("POST", "/_matrix/client/v3/createRoom")
    del body["room_id"]
    with pytest.raises(AssertionError, match="room_id"):
        validate_response("POST", "/_matrix/client/v3/createRoom", 200, body)


def test_corrupted_login_body_fails() -> None:
    body = _example("POST", "/_matrix/client/v3/login")
    body["expires_in_ms"] = "soon"
    with pytest.raises(AssertionError, match="expires_in_ms"):
        validate_response("POST", "/_matrix/client/v3/login", 200, body)


def test_corrupted_nested_sync_event_fails_across_file_refs() -> None:
    body = _example("GET", "/_matrix/client/v3/sync")
    validate_response("GET", "/_matrix/client/v3/sync", 200, body)
    room = next(iter(body["rooms"]["join"].values()))
    del room["timeline"]["events"][0]["sender"]  # ClientEvent lives in another file
    with pytest.raises(AssertionError, match="sender"):
        validate_response("GET", "/_matrix/client/v3/sync", 200, body)


def test_error_statuses() -> None:
    err = {"errcode": "M_FORBIDDEN", "error": "nope"}
    validate_response("POST", "/_matrix/client/v3/login", 403, err)
    # Undocumented error statuses fall back to the generic error schema.
    validate_response("GET", "/_matrix/client/versions", 500, err)
    with pytest.raises(AssertionError, match="errcode"):
        validate_response("GET", "/_matrix/client/versions", 500, {"error": "no errcode"})
    # An undocumented success status is a mismatch.
    with pytest.raises(AssertionError, match="not documented"):
        validate_response("GET", "/_matrix/client/versions", 201, {})


def test_register_and_sync_examples_are_checked() -> None:
    statuses = {s for m, t, s, _, _ in EXAMPLES if (m, t) == ("POST", "/_matrix/client/v3/register")}
    assert {"200", "400", "403"} <= statuses
    with pytest.raises(AssertionError):
        validate_response("POST", "/_matrix/client/v3/register", 200, {"user_id": 5})
