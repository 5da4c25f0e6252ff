"""Starting and measuring the servers under test: Veche and Synapse, same settings."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Where the servers listen: loopback; inside the shaped-link namespace (bench/netns.py) every
# address of that closed namespace, so that the shaper's reflected packets reach them too.
BIND_HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    version: str
    base_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    notes: list[str] = field(default_factory=list)
    # An application service's token, for scenarios that need thousands of users: it registers
    # them without passwords, so setup is not hours of password hashing.
    as_token: str | None = None
    # Clean-up once the process has stopped (a database of its own to drop).
    on_stop: list[Callable[[], None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        while self.on_stop:
            self.on_stop.pop()()


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited at start:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(base_url + "/_matrix/client/versions", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server did not answer within {timeout}s:\n{log.read_text()[-3000:]}")


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


# No URL: the service receives no transactions, so it costs the server nothing per event.
APPSERVICE_REGISTRATION = """\
id: bench
url: null
as_token: "{as_token}"
hs_token: "{hs_token}"
sender_localpart: bench-as
rate_limited: false
namespaces:
  users:
    - {{exclusive: true, regex: "@as-.*"}}
"""


def veche_env(data: Path) -> tuple[dict[str, str], str]:
    """The environment of a bench Veche with its data in `data` (made here), and the
    application service's token it registers."""
    data.mkdir(parents=True, exist_ok=True)
    as_token = secrets.token_hex(16)
    registration = data / "bench-appservice.yaml"
    registration.write_text(APPSERVICE_REGISTRATION.format(as_token=as_token,
                                                           hs_token=secrets.token_hex(16)))
    # Only our settings: a VECHE_* variable of the caller's (VECHE_TEST_BACKENDS, when run
    # from the tests) would be read as configuration and refused.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECHE_")}
    env.update({"VECHE_DATA_DIR": str(data), "VECHE_SERVER_NAME": "bench.local",
                "VECHE_APP_SERVICE_CONFIG_FILES": json.dumps([str(registration)])})
    return env, as_token


def start_veche(workdir: Path, extra_env: dict[str, str] | None = None,
                name: str = "veche") -> Server:
    """`veche serve --dev` on SQLite in workdir/<name>; extra_env (e.g. a federating server's
    name and TLS settings, bench/peers.py, or a PostgreSQL database) overrides the defaults."""
    from veche import __version__

    port = free_port()
    env, as_token = veche_env(workdir / name)
    env.update(extra_env or {})
    log = workdir / f"{name}.log"
    proc = _spawn([sys.executable, "-m", "veche", "serve", "--dev", "--host", BIND_HOST,
                   "--port", str(port), "--log-level", "WARNING"], env, log)
    base_url = f"http://127.0.0.1:{port}"
    _wait_ready(base_url, proc, log, 60)
    return Server("Veche", __version__, base_url, proc, log, as_token=as_token)


def bench_postgres() -> str:
    """The PostgreSQL server the bench creates its databases in (VECHE_BENCH_POSTGRES)."""
    return os.environ.get("VECHE_BENCH_POSTGRES",
                          "postgresql://postgres@127.0.0.1:5432/postgres")


def fresh_postgres_database() -> tuple[str, Callable[[], None]]:
    """A new database on the bench's PostgreSQL server: its URL, and how to drop it."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    admin = bench_postgres()
    dbname = f"veche_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    info = conninfo_to_dict(admin)
    info["dbname"] = dbname
    url = "postgresql://{user}@{host}:{port}/{db}".format(
        user=info.get("user", "postgres"), host=info.get("host", "127.0.0.1"),
        port=info.get("port", 5432), db=dbname)

    def drop() -> None:
        with psycopg.connect(make_conninfo(admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(dbname)))

    return url, drop


def start_veche_postgres(workdir: Path) -> Server:
    """The same Veche on a fresh PostgreSQL database of its own, dropped when it stops."""
    url, drop = fresh_postgres_database()
    try:
        server = start_veche(workdir, {"VECHE_DATABASE__URL": url}, name="veche-postgres")
    except BaseException:
        drop()
        raise
    server.name = "Veche on PostgreSQL"
    server.on_stop.append(drop)
    return server


# --- Synapse ---------------------------------------------------------------------------

def synapse_venv() -> Path:
    return Path(os.environ.get("SYNAPSE_VENV", Path(__file__).parent / ".synapse-venv"))


def ensure_synapse(venv: Path) -> Path:
    """The Synapse venv's python, installing Synapse from PyPI into it if missing."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import synapse"],
                                          capture_output=True).returncode == 0:
        return python
    print(f"installing Synapse into {venv} (a few minutes) ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "matrix-synapse"], check=True)
    return python


_UNLIMITED = "{per_second: 100000, burst_count: 100000}"

SYNAPSE_CONFIG = """\
server_name: "bench.local"
pid_file: {dir}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ['{host}']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: {compress}
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
suppress_key_server_warning: true
trusted_key_servers: []
federation_domain_whitelist: []
url_preview_enabled: false
rc_message: {unlimited}
rc_registration: {unlimited}
rc_room_creation: {unlimited}
rc_login:
  address: {unlimited}
  account: {unlimited}
  failed_attempts: {unlimited}
rc_joins:
  local: {unlimited}
  remote: {unlimited}
rc_joins_per_room: {unlimited}
rc_key_requests: {unlimited}
rc_3pid_validation: {unlimited}
rc_invites:
  per_room: {unlimited}
  per_user: {unlimited}
  per_issuer: {unlimited}
rc_presence:
  per_user: {unlimited}
"""

SYNAPSE_LOG = """\
version: 1
formatters:
  precise: {{format: '%(asctime)s %(name)s %(levelname)s %(message)s'}}
handlers:
  file: {{class: logging.FileHandler, formatter: precise, filename: {dir}/homeserver.log}}
root: {{level: WARNING, handlers: [file]}}
disable_existing_loggers: false
"""


def start_synapse(workdir: Path, compress: bool = False) -> Server:
    """`compress`: gzip on the client listener (Synapse's `compress` option), its best on
    a slow link; off by default as in Synapse's sample configuration."""
    python = ensure_synapse(synapse_venv())
    port = free_port()
    d = workdir / "synapse"
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "homeserver.yaml"
    cfg.write_text(SYNAPSE_CONFIG.format(dir=d, port=port, unlimited=_UNLIMITED, host=BIND_HOST,
                                         compress="true" if compress else "false",
                                         secret1=secrets.token_hex(16),
                                         secret2=secrets.token_hex(16)))
    (d / "log.yaml").write_text(SYNAPSE_LOG.format(dir=d))
    # Synapse appends the git branch of the checkout it sits in to its version: the venv is
    # inside ours, so stop git's search at the venv's parent.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(python.parents[2])}
    subprocess.run([str(python), "-m", "synapse.app.homeserver", "--config-path", str(cfg),
                    "--generate-keys"], check=True, capture_output=True, env=env)
    version = subprocess.run([str(python), "-c", "import synapse; print(synapse.__version__)"],
                             capture_output=True, text=True, env=env).stdout.strip()
    log = workdir / "synapse.log"
    proc = _spawn([str(python), "-m", "synapse.app.homeserver", "--config-path", str(cfg)],
                  env, log)
    base_url = f"http://127.0.0.1:{port}"
    _wait_ready(base_url, proc, log, 180)
    return Server("Synapse", version, base_url, proc, log)
