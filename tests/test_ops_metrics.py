"""Metrics and health checks: a scrape of /metrics during a short load shows the requests,
events and latencies of that load, on its own port, in a form Prometheus' parser reads."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BACKENDS, free_port
from tests.ops_helpers import Acknowledged, room_of, send_messages, upload_media

ROOT = Path(__file__).resolve().parents[1]
SEND = "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for ls, v in found.get(name, []) if all(ls.get(k) == w for k, w in labels.items()))


async def scrape(http: aiohttp.ClientSession, port: int) -> str:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        return await resp.text()


async def test_scrape_during_load_shows_requests_events_and_latency(
        make_server: Any, http: aiohttp.ClientSession) -> None:
    port = free_port()
    srv = make_server({"VECHE_METRICS__ENABLED": "true", "VECHE_METRICS__PORT": str(port)},
                      dev=True)
    clients, room_id = await room_of(http, srv.base_url, 3)
    acked = Acknowledged()
    # A parked long-poll, to be counted among the /sync waiters.
    status, first = await clients[2].get("sync", params={"timeout": "0"})
    assert status == 200
    parked = asyncio.ensure_future(clients[2].get(
        "sync", params={"since": first["next_batch"], "timeout": "30000",
                        "filter": '{"room":{"rooms":[]}}'}))
    load = asyncio.gather(*(send_messages(c, room_id, 15, acked) for c in clients[:2]),
                          upload_media(clients[1], 3, acked))
    await asyncio.sleep(0.3)
    during = samples(await scrape(http, port))  # while the load runs
    await load
    text = await scrape(http, port)
    found = samples(text)
    parked.cancel()

    assert total(during, "veche_sync_waiters") >= 1
    assert len(acked.messages) == 30
    sends = total(found, "veche_http_requests_total", method="PUT", endpoint=SEND, status="200")
    assert sends >= 30
    assert total(found, "veche_http_request_duration_seconds_count", method="PUT",
                 endpoint=SEND) >= 30
    assert total(found, "veche_http_request_duration_seconds_sum", method="PUT",
                 endpoint=SEND) > 0
    # Counted by route pattern: no series per room or per transaction.
    endpoints = {ls["endpoint"] for ls, _ in found["veche_http_requests_total"]}
    assert not any(room_id in e or "!" in e for e in endpoints), endpoints
    # The room's creation, joins and the 30 messages.
    assert total(found, "veche_events_persisted_total", origin="local") >= 30 + 3
    assert total(found, "veche_db_transaction_duration_seconds_count") > 30
    assert total(found, "veche_media_uploaded_bytes_total") == \
        sum(len(c) for c in acked.media.values())
    assert total(found, "process_resident_memory_bytes") > 10_000_000
    assert total(found, "process_cpu_seconds_total") > 0
    if srv.backend == "postgres":
        assert total(found, "veche_db_pool_connections") >= 1
    # The dashboard in the repository charts series the server exports.
    dashboard = json.loads((ROOT / "contrib/grafana/veche.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = {n for e in exprs for n in re.findall(r"\b(?:veche|process)_[a-z_]+", e)}
    assert len(names) >= 10
    for name in names:
        assert name in text, name
    # A refused request is counted under its own status.
    status, _ = await clients[0].put(f"rooms/{room_id}/send/m.room.message/x", {"body": 1},
                                     token="not-a-token")
    assert status == 401
    again = samples(await scrape(http, port))
    assert total(again, "veche_http_requests_total", endpoint=SEND, status="401") == 1


async def test_metrics_stay_off_the_client_port(make_server: Any,
                                                http: aiohttp.ClientSession) -> None:
    port = free_port()
    srv = make_server({"VECHE_METRICS__ENABLED": "true", "VECHE_METRICS__PORT": str(port)})
    # The client port may answer /metrics with the web client's page, never with the series.
    async with http.get(f"{srv.base_url}/metrics") as resp:
        assert "veche_http_requests_total" not in await resp.text()
    assert "veche_http_requests_total" in await scrape(http, port)
    off = make_server({})  # off by default: nothing listens on 9100 for it
    async with http.get(f"{off.base_url}/metrics") as resp:
        assert "veche_http_requests_total" not in await resp.text()


async def test_health_and_readiness(make_server: Any, http: aiohttp.ClientSession) -> None:
    srv = make_server({})
    async with http.get(f"{srv.base_url}/health") as resp:
        assert (resp.status, await resp.text()) == (200, "OK")
    async with http.get(f"{srv.base_url}/health/ready") as resp:
        assert (resp.status, await resp.text()) == (200, "OK")
    if srv.backend != "postgres":
        return
    # The database goes away: the process is alive, but not ready.
    import psycopg

    from tests.conftest import POSTGRES_ADMIN_URL

    name = srv.db_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as c:
        c.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                  (name,))
    try:
        async with http.get(f"{srv.base_url}/health/ready",
                            timeout=aiohttp.ClientTimeout(total=20)) as resp:
            assert resp.status == 503
            assert "database" in await resp.text()
        async with http.get(f"{srv.base_url}/health") as resp:
            assert resp.status == 200
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as c:
            c.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    # Back once the database is (the pool replaces its broken connections).
    for _ in range(60):
        async with http.get(f"{srv.base_url}/health/ready",
                            timeout=aiohttp.ClientTimeout(total=20)) as resp:
            if resp.status == 200:
                return
        await asyncio.sleep(0.5)
    raise AssertionError("still not ready 30 s after the database came back")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_federation_queue_depth_per_destination(backend: str) -> None:
    """Items owed to a server that does not answer show as that destination's queue depth."""
    from aiohttp.test_utils import TestServer

    from tests.conftest import PostgresTestDatabase
    from veche.config import Config, DatabaseConfig, FederationConfig, MetricsConfig
    from veche.metrics import MetricsServer
    from veche.server import HomeServer

    tmp = tempfile.mkdtemp(prefix="veche-metrics-")
    pg = PostgresTestDatabase() if backend == "postgres" else None
    hs = HomeServer(Config(server_name="metrics.test", data_dir=tmp,
                           database=DatabaseConfig(url=pg.url if pg else ""),
                           metrics=MetricsConfig(enabled=True),
                           federation=FederationConfig(ip_range_allowlist=["127.0.0.0/8"])))
    site = TestServer(MetricsServer(hs).app())
    await site.start_server()
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    try:
        for i in range(3):
            await hs.federation_sender.queue_edu(down, "m.test", {"n": i})
        async with aiohttp.ClientSession() as http:
            async with http.get(str(site.make_url("/metrics"))) as resp:
                found = samples(await resp.text())
        assert total(found, "veche_federation_queue_depth", destination=down) == 3
    finally:
        await site.close()
        await hs.close()
        if pg is not None:
            pg.drop()
        shutil.rmtree(tmp, ignore_errors=True)
