"""The multipart/mixed bodies of the federation media endpoints (media/multipart.py): what
Veche writes reads back byte for byte however the network splits it, Synapse's layout and a
Location part are understood, and a body cut short or shaped otherwise is an error (never a
file)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veche.media import multipart

BOUNDARY = "6e1f3c2a9b0d4e5f"


def chunked(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        last = 0
        for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
            if cut > last:
                yield data[last:cut]
                last = cut

    return gen()


async def read_all(data: bytes, cuts: list[int]) -> tuple[bytes, dict[str, str], bytes]:
    reader = multipart.MultipartReader(BOUNDARY, chunked(data, cuts))
    meta = await reader.metadata()
    headers = await reader.media_headers()
    body = b"".join([c async for c in reader.media()])
    return meta, headers, body


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
async def test_round_trip_whatever_the_chunking(payload: bytes, cuts: list[int]) -> None:
    body = (multipart.head(BOUNDARY, "image/png", "inline; filename*=utf-8''a%20b.png")
            + payload + multipart.tail(BOUNDARY))
    meta, headers, got = await read_all(body, cuts)
    assert meta == b"{}" and got == payload
    assert headers == {"content-type": "image/png",
                       "content-disposition": "inline; filename*=utf-8''a%20b.png"}
    assert multipart.filename_of(headers["content-disposition"]) == "a b.png"


async def test_a_payload_holding_the_boundary_text_is_not_cut() -> None:
    # Only CRLF--boundary delimits: the same text elsewhere is data.
    payload = b"--" + BOUNDARY.encode() + b"\n--" + BOUNDARY.encode() + b"x"
    body = multipart.head(BOUNDARY, "text/plain", "inline") + payload + multipart.tail(BOUNDARY)
    assert (await read_all(body, [5, 90, 91]))[2] == payload


async def test_location_part_and_preamble() -> None:
    body = (b"preamble\r\n--" + BOUNDARY.encode() + b"\r\nContent-Type: application/json\r\n\r\n"
            b'{"a": 1}\r\n--' + BOUNDARY.encode() + b"\r\nLocation: https://cdn.example/x\r\n\r\n"
            b"\r\n--" + BOUNDARY.encode() + b"--\r\n")
    meta, headers, _ = await read_all(body, [])
    assert meta == b'{"a": 1}' and headers["location"] == "https://cdn.example/x"


@pytest.mark.parametrize("body", [
    # cut short inside the media: no closing delimiter
    multipart.head(BOUNDARY, "image/png", "inline") + b"half a file",
    # the first part is not JSON
    multipart.head(BOUNDARY, "image/png", "inline").replace(b"application/json", b"text/plain", 1)
    + b"x" + multipart.tail(BOUNDARY),
    # only one part
    b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/json\r\n\r\n{}\r\n--"
    + BOUNDARY.encode() + b"--\r\n",
    # no delimiter at all
    b"x" * 100_000,
])
async def test_malformed_bodies_are_errors(body: bytes) -> None:
    with pytest.raises(multipart.MultipartError):
        await read_all(body, [1000, 5000])


def test_boundary_and_filename_parsing() -> None:
    assert multipart.boundary_of(f"multipart/mixed; boundary={BOUNDARY}") == BOUNDARY
    assert multipart.boundary_of('Multipart/Mixed; boundary="a b"; x=y') == "a b"
    for bad in (None, "application/json", "multipart/mixed"):
        with pytest.raises(multipart.MultipartError):
            multipart.boundary_of(bad)
    assert multipart.filename_of('attachment; filename="cat.gif"') == "cat.gif"
    assert multipart.filename_of("inline; filename=a.png; filename*=utf-8''%C3%A9.png") == "é.png"
    assert multipart.filename_of("inline") is None
    assert multipart.filename_of("inline; filename*=utf-8''%0A.png") is None
