"""Configuration: defaults, environment overrides, and errors that name the bad key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from veche.config import ConfigError, load_config


def test_defaults_need_no_file() -> None:
    config = load_config(None, environ={})
    assert config.server_name == "localhost:8008"
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 8008)
    assert config.database_url.startswith("sqlite:///") and config.database_url.endswith("veche.db")
    assert not config.registration_open and config.rate_limiting


def test_dev_opens_registration_and_disables_rate_limits() -> None:
    config = load_config(None, {"dev": True}, environ={})
    assert config.registration_open and not config.rate_limiting


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "veche.toml"
    path.write_text('server_name = "file.example"\n[listen]\nport = 9000\n')
    config = load_config(str(path), environ={
        "VECHE_SERVER_NAME": "env.example", "VECHE_DATABASE__URL": "postgresql://x@y/z",
    })
    assert config.server_name == "env.example"
    assert config.listen.port == 9000
    assert config.database_url == "postgresql://x@y/z"


@pytest.mark.parametrize(("text", "named"), [
    ("[listen]\nport = 'eighty'\n", "listen.port"),
    ("[listen]\nprot = 80\n", "listen.prot"),
    ("no_such_option = 1\n", "no_such_option"),
    ("[rate_limits.message]\nper_second = -1\nburst = 1\n", "rate_limits.message.per_second"),
])
def test_invalid_config_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "veche.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(str(path), environ={})


def test_sample_config_is_valid(tmp_path: Path) -> None:
    from veche.config import SAMPLE_CONFIG

    path = tmp_path / "veche.toml"
    path.write_text(SAMPLE_CONFIG)
    assert load_config(str(path), environ={}).model_dump() == load_config(None, environ={}).model_dump()


def test_serve_refuses_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "veche.toml"
    path.write_text("[listen]\nport = 123456\n")
    proc = subprocess.run(
        [sys.executable, "-m", "veche", "serve", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "listen.port" in proc.stderr


def test_version_flag() -> None:
    from veche import __version__

    proc = subprocess.run([sys.executable, "-m", "veche", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and __version__ in proc.stdout


@pytest.mark.parametrize("name", ["a b/c", "", "example.org:", "example.org:port",
                                  "[::1", "[not:an:ip]", "300.1.1.1", "bob@example.org",
                                  "example.org:123456"])
def test_invalid_server_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="server_name"):
        load_config(None, {"server_name": name}, environ={})


@pytest.mark.parametrize("name", ["example.org", "localhost:8008", "1.2.3.4", "1.2.3.4:443",
                                  "[::1]", "[1234:5678::abcd]:8448", "matrix-1.example.org"])
def test_valid_server_names_are_accepted(name: str) -> None:
    assert load_config(None, {"server_name": name}, environ={}).server_name == name


@pytest.mark.parametrize("name", ["a b/c", ""])
def test_serve_refuses_invalid_server_name_in_one_line(tmp_path: Path, name: str) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("VECHE_")}
    env.update({"VECHE_SERVER_NAME": name, "VECHE_DATA_DIR": str(tmp_path)})
    proc = subprocess.run(
        [sys.executable, "-m", "veche", "serve", "--dev", "--port", "0"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "server_name" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "veche.db").exists()
