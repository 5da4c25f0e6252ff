"""[federation] and [tls]: defaults that need nothing, and one-line errors naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from veche.config import ConfigError, load_config


def test_defaults() -> None:
    config = load_config(None, environ={})
    fed = config.federation
    assert (fed.enabled, fed.tls_port, fed.ca_file, fed.well_known_server) == (True, 8448, "", "")
    assert fed.ip_range_allowlist == fed.domain_allowlist == fed.trusted_key_servers == []
    assert not config.tls.enabled


@pytest.mark.parametrize(("text", "named"), [
    ('[tls]\ncertificate_path = "/x.pem"\n', "tls"),
    ('[federation]\nip_range_allowlist = ["10.0.0.0/33"]\n', "federation.ip_range_allowlist"),
    ('[federation]\ndomain_allowlist = ["not a name"]\n', "federation.domain_allowlist"),
    ('[federation]\nwell_known_server = "x.org:99999"\n', "federation.well_known_server"),
    ("[federation]\ntls_port = 70000\n", "federation.tls_port"),
    ("[federation]\nnotaries = []\n", "federation.notaries"),
    ('[federation]\ntrusted_key_servers = [{ verify_keys = {} }]\n',
     "federation.trusted_key_servers.0.server_name"),
])
def test_invalid_federation_config_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "veche.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(str(path), environ={})


def test_unloadable_certificate_stops_serve_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECHE_")}
    env.update({"VECHE_DATA_DIR": str(tmp_path / "data"),
                "VECHE_TLS__CERTIFICATE_PATH": str(tmp_path / "missing.pem"),
                "VECHE_TLS__PRIVATE_KEY_PATH": str(tmp_path / "missing.key"),
                "VECHE_FEDERATION__TLS_PORT": str(free_port())})
    proc = subprocess.run([sys.executable, "-m", "veche", "serve", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode != 0
    error = [line for line in proc.stderr.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and "missing.pem" in error[0] and "[tls]" in error[0], proc.stderr
    assert "Traceback" not in proc.stderr
