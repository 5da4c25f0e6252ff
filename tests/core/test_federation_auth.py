"""X-Matrix request authentication: the header grammar (RFC 9110 auth-params) and the
signature over {method, uri, origin, destination, content}."""

from __future__ import annotations

import pytest
from signedjson.key import generate_signing_key, get_verify_key

from veche.core.federation_auth import (
    XMatrix,
    XMatrixError,
    build_x_matrix,
    parse_x_matrix,
    sign_request,
    verify_request,
)

KEY = generate_signing_key("k1")
OTHER = generate_signing_key("k1")


@pytest.mark.parametrize(("header", "expected"), [
    ('X-Matrix origin="a.org",destination="b.org",key="ed25519:k1",sig="c2ln"',
     XMatrix("a.org", "ed25519:k1", "c2ln", "b.org")),
    # Synapse's form, and any order, case of names and scheme, spaces around commas.
    ('x-matrix  Sig="c2ln" , KEY="ed25519:k1",\tOrigin="a.org"',
     XMatrix("a.org", "ed25519:k1", "c2ln", None)),
    # Unquoted tokens; colons and base64 characters allowed unquoted for older servers.
    ("X-Matrix origin=a.org:8448,key=ed25519:k1,sig=ab+/cd", XMatrix("a.org:8448", "ed25519:k1", "ab+/cd")),
    # Backslash escapes in quoted values are undone; unknown parameters are ignored.
    (r'X-Matrix origin="a\.org",key="ed25519:k1",sig="x\"y",extra="1"',
     XMatrix("a.org", "ed25519:k1", 'x"y')),
])
def test_parse(header: str, expected: XMatrix) -> None:
    assert parse_x_matrix(header) == expected


@pytest.mark.parametrize(("header", "why"), [
    ("Bearer abc", "not an X-Matrix"),
    ("X-Matrix", "not an X-Matrix"),
    ('X-Matrix key="ed25519:k1",sig="c2ln"', "missing origin"),
    ('X-Matrix origin="a.org",sig="c2ln"', "missing key"),
    ('X-Matrix origin="a.org",key="ed25519:k1"', "missing sig"),
    ('X-Matrix origin="a.org",key="ed25519:k1",sig=""', "missing sig"),
    ('X-Matrix origin="a.org,key="ed25519:k1",sig="x"', "expected ','"),
    ('X-Matrix origin="a.org",key="ed25519:k1",sig="x', "unterminated"),
    ('X-Matrix origin="a.org" key="ed25519:k1",sig="x"', "expected ','"),
    ('X-Matrix origin="a.org",origin="b.org",key="ed25519:k1",sig="x"', "twice"),
    ('X-Matrix origin,key="ed25519:k1",sig="x"', "no value"),
])
def test_parse_refuses(header: str, why: str) -> None:
    with pytest.raises(XMatrixError, match=why):
        parse_x_matrix(header)


def test_build_round_trips_and_is_what_old_servers_parse() -> None:
    auth = XMatrix("a.org", "ed25519:k1", 'we"ird\\', "b.org:8448")
    header = build_x_matrix(auth)
    assert header.startswith('X-Matrix origin="a.org",destination="b.org:8448",key=')
    assert parse_x_matrix(header) == auth


URI = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Ab.org&field=displayname"


def _signed(**overrides: object) -> XMatrix:
    args = {"origin": "a.org", "destination": "b.org", "method": "GET", "uri": URI,
            "content": None, **overrides}
    return parse_x_matrix(sign_request(KEY, str(args["origin"]), str(args["destination"]),
                                       str(args["method"]), str(args["uri"]), args["content"]))


@pytest.mark.parametrize(("signed_as", "checked_as", "ok"), [
    ({}, {}, True),
    ({"content": {"a": [1, "x"]}, "method": "PUT"}, {"content": {"a": [1, "x"]}, "method": "PUT"}, True),
    ({}, {"method": "POST"}, False),
    ({}, {"destination": "c.org"}, False),
    # The raw target is what was signed: the decoded one does not verify.
    ({}, {"uri": "/_matrix/federation/v1/query/profile?user_id=@alice:b.org&field=displayname"}, False),
    ({"content": {"a": 1}, "method": "PUT"}, {"content": {"a": 2}, "method": "PUT"}, False),
    ({"content": {"a": 1}, "method": "PUT"}, {"content": None, "method": "PUT"}, False),
])
def test_verify(signed_as: dict[str, object], checked_as: dict[str, object], ok: bool) -> None:
    auth = _signed(**signed_as)
    check = {"method": "GET", "uri": URI, "destination": "b.org", "content": None, **checked_as}
    assert verify_request(auth, get_verify_key(KEY), str(check["method"]), str(check["uri"]),
                          str(check["destination"]), check["content"]) is ok


def test_verify_refuses_another_key_and_a_forged_signature() -> None:
    auth = _signed()
    assert not verify_request(auth, get_verify_key(OTHER), "GET", URI, "b.org")
    forged = XMatrix(auth.origin, auth.key, auth.sig[:-2] + ("AA" if auth.sig[-2:] != "AA" else "BB"),
                     auth.destination)
    assert not verify_request(forged, get_verify_key(KEY), "GET", URI, "b.org")
    # The origin is part of what is signed: another server cannot reuse the signature.
    stolen = XMatrix("evil.org", auth.key, auth.sig, auth.destination)
    assert not verify_request(stolen, get_verify_key(KEY), "GET", URI, "b.org")
