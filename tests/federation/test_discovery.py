"""Finding a server (server-server API "Resolving server names") against real HTTPS servers
and a real DNS server on loopback: which port is reached, with which Host header and SNI,
what is cached, and what the configuration refuses.

The spec's ports 443 (.well-known) and 8448 (federation) are `https_port` and
`federation_port` here: two servers on free loopback ports play them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from signedjson.key import generate_signing_key

from tests.federation.https_servers import RecordingServer
from tests.federation.local_dns import LocalDns
from tests.federation.pki import TestCA
from veche.config import FederationConfig
from veche.federation.client import FederationClient, FederationDenied, Unreachable
from veche.federation.resolver import ServerResolver

NAMES = ["a.test", "deleg.test", "deleg2.test", "deleg3.test", "srv.test", "old.test",
         "plain.test", "target.test", "bad.test", "redir.test", "moved.test"]
VERSION = "/_matrix/federation/v1/version"


@dataclass
class Net:
    dns: LocalDns
    web: RecordingServer  # plays port 443: .well-known
    fed: RecordingServer  # plays port 8448
    alt: RecordingServer  # what SRV records point to
    ca: TestCA

    def client(self, **config: Any) -> FederationClient:
        settings = {"ca_file": str(self.ca.ca_file), "ip_range_allowlist": ["127.0.0.0/8"],
                    **config}
        return FederationClient("us.test", generate_signing_key("k"), FederationConfig(**settings),
                                dns_resolver=self.dns.resolver(), https_port=self.web.port,
                                federation_port=self.fed.port)


@pytest.fixture
async def net(test_ca: TestCA, local_dns: LocalDns) -> AsyncIterator[Net]:
    cert = test_ca.issue(NAMES, ["127.0.0.1"])
    web = await RecordingServer(cert).start()
    fed = await RecordingServer(cert).start()
    alt = await RecordingServer(cert).start()
    fed.responses[VERSION] = alt.responses[VERSION] = (200, {"server": {"name": "fed"}}, {})
    for name in NAMES:
        local_dns.records[(name, "A")] = ["127.0.0.1"]
    yield Net(local_dns, web, fed, alt, test_ca)
    for server in (web, fed, alt):
        await server.close()


def well_known(net: Net, host: str, body: Any, status: int = 200,
               headers: dict[str, str] | None = None) -> None:
    net.web.responses[(host, "/.well-known/matrix/server")] = (status, body, headers or {})


def srv(net: Net, name: str, port: int, target: str = "target.test") -> None:
    net.dns.records[(name, "SRV")] = [f"10 5 {port} {target}."]


CASES = {
    # name: (setup, expected Host, expected SNI, server name); SRV cases reach `alt`, the
    # others the federation port.
    "IP literal": (lambda n: None, "127.0.0.1", None, "127.0.0.1"),
    "IP literal with port": (lambda n: None, "127.0.0.1:{fed}", None, "127.0.0.1:{fed}"),
    "host with port": (lambda n: None, "a.test:{fed}", "a.test", "a.test:{fed}"),
    "well-known to host:port": (
        lambda n: well_known(n, "deleg.test", {"m.server": f"deleg.test:{n.fed.port}"}),
        "deleg.test:{fed}", "deleg.test", "deleg.test"),
    "well-known to IP:port": (
        lambda n: well_known(n, "deleg.test", {"m.server": f"127.0.0.1:{n.fed.port}"}),
        "127.0.0.1:{fed}", None, "deleg.test"),
    "well-known to host with SRV": (
        lambda n: (well_known(n, "deleg.test", {"m.server": "deleg2.test"}),
                   srv(n, "_matrix-fed._tcp.deleg2.test", n.alt.port)),
        "deleg2.test", "deleg2.test", "deleg.test"),
    "well-known to host without SRV: 8448": (
        lambda n: well_known(n, "deleg.test", {"m.server": "deleg3.test"}),
        "deleg3.test", "deleg3.test", "deleg.test"),
    "no well-known, SRV _matrix-fed": (
        lambda n: srv(n, "_matrix-fed._tcp.srv.test", n.alt.port), "srv.test", "srv.test", "srv.test"),
    "no well-known, deprecated SRV _matrix": (
        lambda n: srv(n, "_matrix._tcp.old.test", n.alt.port), "old.test", "old.test", "old.test"),
    "_matrix-fed is preferred to _matrix": (
        lambda n: (srv(n, "_matrix-fed._tcp.srv.test", n.alt.port),
                   srv(n, "_matrix._tcp.srv.test", n.fed.port)), "srv.test", "srv.test", "srv.test"),
    "no well-known, no SRV: 8448": (lambda n: None, "plain.test", "plain.test", "plain.test"),
    "invalid well-known is ignored": (
        lambda n: well_known(n, "bad.test", b"{not json"), "bad.test", "bad.test", "bad.test"),
    "well-known redirect is followed": (
        lambda n: (n.web.responses.__setitem__(("redir.test", "/.well-known/matrix/server"),
                                               (302, b"", {"Location": "/moved"})),
                   n.web.responses.__setitem__(("redir.test", "/moved"),
                                               (200, {"m.server": f"deleg.test:{n.fed.port}"}, {}))),
        "deleg.test:{fed}", "deleg.test", "redir.test"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_resolution(net: Net, case: str) -> None:
    setup, host, sni, _ = CASES[case]
    server_name = CASES[case][3].format(fed=net.fed.port)
    setup(net)
    client = net.client()
    try:
        assert await client.get_json(server_name, VERSION) == {"server": {"name": "fed"}}
    finally:
        await client.close()
    via_srv = [("_" in n) for n, t in net.dns.records if t == "SRV"]
    reached, other = (net.alt, net.fed) if any(via_srv) else (net.fed, net.alt)
    assert len(reached.seen) == 1 and not other.seen
    arrived = reached.seen[-1]
    assert (arrived.host, arrived.sni) == (host.format(fed=net.fed.port), sni)
    # Every request is signed for the server name before delegation.
    assert f'destination="{server_name}"' in (arrived.authorization or "")


async def test_srv_priority_and_fallback_to_the_next_target(net: Net) -> None:
    # The preferred target has nothing listening; the next one answers.
    dead = RecordingServer(net.fed.cert)
    await dead.start()
    dead_port = dead.port
    await dead.close()
    net.dns.records[("_matrix-fed._tcp.srv.test", "SRV")] = [
        f"1 0 {dead_port} target.test.", f"2 0 {net.fed.port} target.test."]
    client = net.client()
    try:
        await client.get_json("srv.test", VERSION)
    finally:
        await client.close()
    assert net.fed.seen[-1].host == "srv.test"
    assert ("_matrix-fed._tcp.srv.test", "SRV") in net.dns.queries


async def test_well_known_is_cached_by_cache_control_and_errors_briefly(net: Net) -> None:
    now = [1000.0]
    client = net.client()
    resolver = ServerResolver(client._fetch_well_known, client._lookup_srv,
                              federation_port=net.fed.port, clock=lambda: now[0])
    well_known(net, "deleg.test", {"m.server": "a.test:1"}, headers={"Cache-Control": "max-age=600"})
    try:
        assert await resolver.well_known("deleg.test") == "a.test:1"
        well_known(net, "deleg.test", {"m.server": "a.test:2"})
        now[0] += 599
        assert await resolver.well_known("deleg.test") == "a.test:1"  # still cached
        now[0] += 2
        assert await resolver.well_known("deleg.test") == "a.test:2"  # expired: fetched again
        fetches = len(net.web.seen)
        # No Cache-Control: a day; then a failure is kept two minutes, and doubles.
        now[0] += 24 * 3600 + 1
        well_known(net, "deleg.test", {}, status=500)
        assert await resolver.well_known("deleg.test") is None
        now[0] += 119
        assert await resolver.well_known("deleg.test") is None
        assert len(net.web.seen) == fetches + 1
        now[0] += 2
        assert await resolver.well_known("deleg.test") is None
        now[0] += 200  # the second failure is kept 240 s
        assert await resolver.well_known("deleg.test") is None
        assert len(net.web.seen) == fetches + 2
    finally:
        await client.close()


async def test_certificate_must_match_the_name(net: Net) -> None:
    net.dns.records[("wrong.test", "A")] = ["127.0.0.1"]  # not in the certificate
    client = net.client()
    try:
        with pytest.raises(Unreachable):
            await client.get_json(f"wrong.test:{net.fed.port}", VERSION)
    finally:
        await client.close()
    assert not net.fed.seen


async def test_untrusted_ca_is_refused(net: Net) -> None:
    client = net.client(ca_file="")
    try:
        with pytest.raises(Unreachable):
            await client.get_json(f"a.test:{net.fed.port}", VERSION)
    finally:
        await client.close()
    assert not net.fed.seen


async def test_loopback_needs_ip_range_allowlist(net: Net) -> None:
    client = net.client(ip_range_allowlist=[])
    try:
        for name in (f"127.0.0.1:{net.fed.port}", f"a.test:{net.fed.port}", "plain.test"):
            with pytest.raises(Unreachable):
                await client.get_json(name, VERSION)
    finally:
        await client.close()
    assert not net.fed.seen


@pytest.mark.parametrize("config", [{"enabled": False}, {"domain_allowlist": ["other.test"]}])
async def test_refused_destinations_cost_no_request(net: Net, config: dict[str, Any]) -> None:
    client = net.client(**config)
    try:
        with pytest.raises(FederationDenied):
            await client.get_json("plain.test", VERSION)
    finally:
        await client.close()
    assert not net.fed.seen and not net.web.seen and not net.dns.queries


async def test_domain_allowlist_allows_listed(net: Net) -> None:
    client = net.client(domain_allowlist=[f"a.test:{net.fed.port}"])
    try:
        await client.get_json(f"a.test:{net.fed.port}", VERSION)
    finally:
        await client.close()
    assert len(net.fed.seen) == 1
