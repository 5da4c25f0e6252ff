"""Federating servers on loopback with a test CA (bench/pki.py): Synapse (from its own venv,
found or installed by bench.servers) and the environment that makes a Veche federate. The
federation benchmark and the federation tests (tests/federation/peers.py) share these.

Server names are `localhost:<TLS port>`: an explicit port needs no .well-known or SRV, and
`localhost` resolves without touching /etc/hosts. Each server's certificate is for
`localhost` and 127.0.0.1; each trusts the test CA and allows loopback peers.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.pki import TestCA
from bench.servers import (
    _UNLIMITED,
    SYNAPSE_LOG,
    Server,
    _spawn,
    _wait_ready,
    ensure_synapse,
    free_port,
    synapse_venv,
)

SYNAPSE_FEDERATION_CONFIG = """\
server_name: "{server_name}"
pid_file: {dir}/homeserver.pid
listeners:
  - port: {client_port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
  - port: {federation_port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: true
    resources:
      - names: [federation, keys, openid]
        compress: false
tls_certificate_path: {cert}
tls_private_key_path: {key}
federation_custom_ca_list: [{ca}]
federation_verify_certificates: true
ip_range_whitelist: ['127.0.0.0/8', '::1']
# Peers named by an IP literal (127.0.0.1:port) too: Synapse checks those against this list
# alone, never against ip_range_whitelist.
federation_ip_range_blacklist: []
trusted_key_servers: []
suppress_key_server_warning: true
allow_public_rooms_over_federation: true
room_list_publication_rules:
  - action: allow
federation:
  max_long_retries: 1
  max_long_retry_delay: 1s
database:
  name: sqlite3
  args:
    database: {dir}/homeserver.db
log_config: {dir}/log.yaml
media_store_path: {dir}/media_store
signing_key_path: {dir}/signing.key
report_stats: false
macaroon_secret_key: "{secret1}"
form_secret: "{secret2}"
enable_registration: true
enable_registration_without_verification: true
url_preview_enabled: false
rc_message: {unlimited}
rc_registration: {unlimited}
rc_login:
  address: {unlimited}
  account: {unlimited}
  failed_attempts: {unlimited}
rc_federation:
  window_size: 1000
  sleep_limit: 1000
  sleep_delay: 0
  reject_limit: 1000
  concurrent: 100
"""


class SynapsePeer:
    """A running Synapse federating over TLS; `client_url` is its plain client API."""

    link: Any = None  # the tests' relay in front of the federation port, its name's port

    def __init__(self, server: Server, server_name: str, federation_port: int, directory: Path,
                 command: tuple[list[str], dict[str, str]]) -> None:
        self.server = server
        self.command = command
        self.server_name = server_name
        self.federation_port = federation_port
        self.client_url = server.base_url
        self.dir = directory

    def log(self) -> str:
        path = self.dir / "homeserver.log"
        return path.read_text()[-6000:] if path.exists() else ""

    def stop(self) -> None:
        self.server.stop()

    def start_again(self) -> None:
        """Start a stopped peer again: the same name, ports, keys and database (for tests
        of an outage; the session's other tests find it as it was)."""
        if self.server.proc.poll() is None:
            return
        cmd, env = self.command
        self.server.proc = _spawn(cmd, env, self.server.log_path)
        _wait_ready(self.client_url, self.server.proc, self.server.log_path, 180)
        wait_for_port(self.federation_port)

    async def register(self, http: aiohttp.ClientSession, localpart: str) -> tuple[str, str]:
        """(user ID, access token) of a new account."""
        body = {"username": localpart, "password": secrets.token_hex(8),
                "auth": {"type": "m.login.dummy"}, "inhibit_login": False}
        async with http.post(f"{self.client_url}/_matrix/client/v3/register", json=body) as r:
            data = await r.json()
            assert r.status == 200, data
            return data["user_id"], data["access_token"]


def start_synapse_peer(workdir: Path, ca: TestCA, log_level: str = "INFO",
                       name_port: int | None = None) -> SynapsePeer:
    """Tests log at INFO (to read on failure); the benchmark at WARNING (logging costs CPU).
    `name_port`: its name's port when not the federation port (the tests' relay)."""
    python = ensure_synapse(synapse_venv())
    client_port, federation_port = free_port(), free_port()
    server_name = f"localhost:{name_port or federation_port}"
    d = workdir / "synapse"
    d.mkdir(parents=True, exist_ok=True)
    cert = ca.issue(["localhost"], ["127.0.0.1"])
    cfg = d / "homeserver.yaml"
    cfg.write_text(SYNAPSE_FEDERATION_CONFIG.format(
        server_name=server_name, dir=d, client_port=client_port, federation_port=federation_port,
        cert=cert.cert, key=cert.key, ca=ca.ca_file, unlimited=_UNLIMITED,
        secret1=secrets.token_hex(16), secret2=secrets.token_hex(16)))
    (d / "log.yaml").write_text(SYNAPSE_LOG.format(dir=d).replace("WARNING", log_level))
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(python.parents[2])}
    subprocess.run([str(python), "-m", "synapse.app.homeserver", "--config-path", str(cfg),
                    "--generate-keys"], check=True, capture_output=True, env=env)
    version = subprocess.run([str(python), "-c", "import synapse; print(synapse.__version__)"],
                             capture_output=True, text=True, env=env).stdout.strip()
    log = workdir / "synapse.log"
    cmd = [str(python), "-m", "synapse.app.homeserver", "--config-path", str(cfg)]
    proc = _spawn(cmd, env, log)
    base_url = f"http://127.0.0.1:{client_port}"
    server = Server("Synapse", version, base_url, proc, log)
    try:
        _wait_ready(base_url, proc, log, 180)
        wait_for_port(federation_port)
    except BaseException:
        server.stop()
        raise
    return SynapsePeer(server, server_name, federation_port, d, (cmd, env))


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def federating_veche_env(ca: TestCA, tls_port: int, host: str = "localhost",
                         name_port: int | None = None, **extra: Any) -> dict[str, str]:
    """`host`: the server name's host, localhost or 127.0.0.1 (the certificate's names);
    server ACLs, which ignore ports, can tell a 127.0.0.1 server from the others.
    `name_port`: the name's port when not the TLS port (the tests' relay in front of it)."""
    cert = ca.issue(["localhost"], ["127.0.0.1"])
    env = {
        "VECHE_SERVER_NAME": f"{host}:{name_port or tls_port}",
        "VECHE_FEDERATION__TLS_PORT": str(tls_port),
        "VECHE_TLS__CERTIFICATE_PATH": str(cert.cert),
        "VECHE_TLS__PRIVATE_KEY_PATH": str(cert.key),
        "VECHE_FEDERATION__CA_FILE": str(ca.ca_file),
        "VECHE_FEDERATION__IP_RANGE_ALLOWLIST": json.dumps(["127.0.0.0/8", "::1/128"]),
    }
    env.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return env
