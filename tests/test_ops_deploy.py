"""The deployment files in contrib/: the systemd unit passes `systemd-analyze verify` and
its offline security review, and agrees with the server (its command, data directory and
stop timeout); the Containerfile's instructions agree with the project and its health check
works against a real server. (No container is built here: this machine has no container
daemon and no registry to pull the base image from.)"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from veche.config import Config

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "contrib/systemd/veche.service"
CONTAINERFILE = ROOT / "contrib/Containerfile"
VENV_VECHE = Path(sys.executable).parent / "veche"


def unit() -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (a key may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
            continue
        key, _, value = line.partition("=")
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def _installed_copy(tmp_path: Path) -> Path:
    # verify checks that ExecStart's program exists: point it at this checkout's veche.
    text = UNIT.read_text().replace("/opt/veche/bin/veche", str(VENV_VECHE))
    path = tmp_path / "veche.service"
    path.write_text(text)
    return path


def test_unit_is_sandboxed_and_agrees_with_the_server() -> None:
    service = unit()["Service"]
    one = {k: v[-1] for k, v in service.items()}
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "ProtectHome",
                "ProtectKernelTunables", "ProtectControlGroups", "RestrictSUIDSGID"):
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "strict"
    assert one["CapabilityBoundingSet"] == ""
    assert one["User"] and one["User"] != "root"
    env = dict(e.split("=", 1) for v in service["Environment"] for e in shlex.split(v))
    data_dir = env["VECHE_DATA_DIR"]
    assert data_dir in one["ReadWritePaths"].split()
    assert f"/var/lib/{one['StateDirectory']}" == data_dir
    # The server's graceful stop fits in the stop timeout.
    assert float(one["TimeoutStopSec"]) > Config().listen.shutdown_grace_s
    assert one["KillSignal"] == "SIGTERM"
    # ExecStart is a command this veche accepts.
    args = shlex.split(one["ExecStart"])
    assert Path(args[0]).name == "veche" and args[1] == "serve"
    help_text = subprocess.run([str(VENV_VECHE), *args[1:2], "--help"], capture_output=True,
                               text=True, check=True).stdout
    for option in (a for a in args[2:] if a.startswith("--")):
        assert option in help_text, option


def test_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the unit's keys are checked above)")
    path = _installed_copy(tmp_path)
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    review = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(path)],
                            capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", review.stdout)
    assert found, review.stdout[-2000:] + review.stderr
    # systemd rates 0-10; below 2 is its "OK" (the best band).
    assert float(found.group(1)) < 2.0, review.stdout[-3000:]


def containerfile() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_containerfile_agrees_with_the_project() -> None:
    steps = containerfile()
    instructions = [i for i, _ in steps]
    assert instructions.count("FROM") == 2  # built in one stage, run without build tools
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = pyproject["project"]["requires-python"].removeprefix(">=")
    for _, image in (s for s in steps if s[0] == "FROM"):
        version = re.search(r"python:(\d+\.\d+)", image)
        assert version and tuple(map(int, version.group(1).split("."))) >= \
            tuple(map(int, wanted.split("."))), image
    for _, args in (s for s in steps if s[0] == "COPY" and "--from" not in s[1]):
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), source
    # Runs as a user of its own, not root, from the USER line on.
    user_at = instructions.index("USER")
    assert dict(steps)["USER"] not in ("root", "0")
    assert user_at < instructions.index("ENTRYPOINT")
    entry = json.loads(dict(steps)["ENTRYPOINT"])
    assert entry[0] in pyproject["project"]["scripts"] and entry[1] == "serve"
    env = dict(re.findall(r"(\w+)=(\S+)", dict(steps)["ENV"]))
    assert dict(steps)["VOLUME"] == env["VECHE_DATA_DIR"]
    config = Config()
    exposed = {int(p) for p in dict(steps)["EXPOSE"].split()}
    assert {config.listen.port, config.federation.tls_port} == exposed
    assert dict(steps)["STOPSIGNAL"] == "SIGTERM"


async def test_containerfile_healthcheck_asks_a_real_server(make_server: Any) -> None:
    check = dict(containerfile())["HEALTHCHECK"]
    command = json.loads(check[check.index("CMD") + 3:].strip())
    assert "/health/ready" in " ".join(command)
    srv = make_server({})
    # The image's server listens on 8008; this one on a free port.
    command = [c.replace("127.0.0.1:8008", f"127.0.0.1:{srv.port}") for c in command]
    command[0] = sys.executable
    assert subprocess.run(command, timeout=30).returncode == 0
    srv.stop()
    assert subprocess.run(command, timeout=30, capture_output=True).returncode != 0
