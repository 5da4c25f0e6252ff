"""Discovery endpoints and the error behaviour every endpoint shares."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import ServerProcess
from veche.config import ConfigError, load_config


async def test_versions_and_well_known(homeserver: ServerProcess, make_client: Any) -> None:
    client = make_client()
    status, body = await client.get("/_matrix/client/versions")
    assert status == 200 and "v1.11" in body["versions"]
    status, body = await client.get("/.well-known/matrix/client")
    assert status == 200 and body["m.homeserver"]["base_url"].startswith("http")
    # No delegation unless [federation] well_known_server says where (tests/federation).
    status, body = await client.get("/.well-known/matrix/server")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_unknown_endpoint_and_wrong_method(make_client: Any) -> None:
    client = make_client()
    status, body = await client.get("/_matrix/client/v3/no/such/thing")
    assert status == 404 and body["errcode"] == "M_UNRECOGNIZED"
    status, body = await client.request("DELETE", "/_matrix/client/versions")
    assert status == 405 and body["errcode"] == "M_UNRECOGNIZED"


async def test_missing_and_unknown_token(make_client: Any) -> None:
    client = make_client()
    status, body = await client.get("account/whoami", token=False)
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"
    status, body = await client.get("account/whoami", token="not-a-token")
    assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN"
    assert body["soft_logout"] is False


async def test_cors_preflight_and_headers(homeserver: ServerProcess, http: aiohttp.ClientSession) -> None:
    async with http.options(homeserver.base_url + "/_matrix/client/v3/login",
                            headers={"Origin": "https://app.element.io",
                                     "Access-Control-Request-Method": "POST"}) as resp:
        assert resp.status in (200, 204)
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    async with http.get(homeserver.base_url + "/_matrix/client/versions",
                        headers={"Origin": "https://app.element.io"}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"


async def test_oversized_body_is_m_too_large(make_client: Any) -> None:
    client = make_client()
    status, body = await client.post("login", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                                     token=False, headers={"Content-Type": "application/json"})
    assert status == 413 and body["errcode"] == "M_TOO_LARGE"


async def test_support_contacts_are_published_when_configured(make_server: Any, http: Any,
                                                              homeserver: Any) -> None:
    async with http.get(f"{homeserver.base_url}/.well-known/matrix/support") as resp:
        assert resp.status == 404 and (await resp.json())["errcode"] == "M_NOT_FOUND"
    srv = make_server({"VECHE_SUPPORT__CONTACTS": '[{"role": "m.role.admin", "matrix_id": "@admin:x.org"},'
                       ' {"role": "m.role.security", "email_address": "sec@x.org"}]',
                       "VECHE_SUPPORT__SUPPORT_PAGE": "https://x.org/help"})
    async with http.get(f"{srv.base_url}/.well-known/matrix/support") as resp:
        assert resp.status == 200
        assert await resp.json() == {
            "contacts": [{"role": "m.role.admin", "matrix_id": "@admin:x.org"},
                         {"role": "m.role.security", "email_address": "sec@x.org"}],
            "support_page": "https://x.org/help"}


def test_a_support_contact_needs_a_way_to_reach_it() -> None:
    with pytest.raises(ConfigError, match="support.contacts"):
        load_config(environ={"VECHE_SUPPORT__CONTACTS": '[{"role": "m.role.admin"}]'})
