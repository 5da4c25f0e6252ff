"""Many Veche processes on one fresh PostgreSQL database and NATS, behind HAProxy with the
repository's deploy/haproxy.cfg (README "Many processes"), and where the machine's CPU goes
while they serve: each Veche process, the database's PostgreSQL backends, HAProxy, NATS,
the load generator and everything else on the machine."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import (
    BIND_HOST,
    CLK_TCK,
    Server,
    _spawn,
    _wait_ready,
    bench_postgres,
    free_port,
    fresh_postgres_database,
    veche_env,
)

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
BUS_URL = os.environ.get("VECHE_BENCH_NATS", "nats://127.0.0.1:4222")


def proc_cpu(pid: int) -> float:
    """utime+stime of a process (all its threads), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def runqueue_wait(pid: int) -> float:
    """Seconds the process's threads have spent ready to run but waiting for a core
    (/proc/<pid>/task/*/schedstat): CPU it wanted and did not get."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return 0.0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total / 1e9


def machine_busy() -> float:
    """CPU-seconds the whole machine has spent busy (every process, every core) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    steal = values[7] if len(values) > 7 else 0  # another guest's: not ours to count
    return (sum(values[:8]) - idle - steal) / CLK_TCK


def pids_named(comm: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists()
                                        else None)
    if not found:
        raise RuntimeError("HAProxy is not installed (apt-get install haproxy)")
    return found


def balancer_config(n: int, source: Path = HAPROXY_CFG) -> str:
    """deploy/haproxy.cfg with its `server` lines for n processes (VECHE_W1 … VECHE_Wn)."""
    text = source.read_text()
    servers = re.findall(r"^[ \t]*server w\d+ .*\n", text, flags=re.M)
    if not servers:
        raise RuntimeError(f"{source} has no `server wN` lines")
    template = servers[0]
    lines = "".join(re.sub(r"\bw1\b", f"w{i}", template).replace("VECHE_W1", f"VECHE_W{i}")
                    for i in range(1, n + 1))
    text = text.replace(servers[0], lines, 1)
    for extra in servers[1:]:
        text = text.replace(extra, "", 1)
    return text


@dataclass
class Cluster(Server):
    """Server's base_url is the balancer's (or the one process's when there is none)."""
    dbname: str = ""
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    balancer: subprocess.Popen[bytes] | None = None

    def cpu_seconds(self) -> float:
        return sum(proc_cpu(p.pid) for p in self.workers.values())

    def rss_mb(self) -> float:
        total = 0.0
        for p in self.workers.values():
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        return total

    def stop(self) -> None:
        if self.balancer is not None and self.balancer.poll() is None:
            self.balancer.terminate()
            self.balancer.wait(10)
        for name, proc in self.workers.items():
            if name != "w1":  # the first is self.proc, stopped (and the database dropped) below
                _stop(proc)
        super().stop()

    def postgres_pids(self) -> tuple[list[int], list[int]]:
        """The PostgreSQL backends serving this database, and PostgreSQL's own processes
        (checkpointer, WAL writer, …: shared with every other database on the server)."""
        import psycopg

        with psycopg.connect(bench_postgres(), autocommit=True) as conn:
            rows = conn.execute("SELECT pid, datname, backend_type FROM pg_stat_activity"
                                " WHERE pid <> pg_backend_pid()").fetchall()
        mine = [r[0] for r in rows if r[1] == self.dbname]
        shared = [r[0] for r in rows if r[1] is None and r[2] != "client backend"]
        return mine, shared


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_cluster(workdir: Path, n: int, bus: bool = True,
                  balancer_cfg: Path = HAPROXY_CFG) -> Cluster:
    """n `veche serve` processes on one fresh PostgreSQL database sharing one data directory;
    with `bus`, joined by NATS and behind HAProxy. n=1 without the bus is the plain single
    process (bench/servers.py's veche-postgres)."""
    from veche import __version__

    url, drop = fresh_postgres_database()
    env, as_token = veche_env(workdir / "veche")
    env["VECHE_DATABASE__URL"] = url
    if bus:
        env.update({"VECHE_BUS__URL": BUS_URL,
                    "VECHE_LISTEN__TRUSTED_PROXIES": '["127.0.0.1/32"]'})
    ports: dict[str, int] = {}
    workers: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(name: str) -> None:
        ports[name] = free_port()
        cmd = [sys.executable, "-m", "veche", "serve", "--dev", "--host", BIND_HOST,
               "--port", str(ports[name]), "--log-level", "WARNING"]
        workers[name] = _spawn(cmd + (["--worker-name", name] if bus else []), env,
                               workdir / f"{name}.log")

    label = f"{n} Veche process{'es' if n > 1 else ''}" + (
        " (NATS, HAProxy)" if bus else " (no bus, no balancer)")
    try:
        # The first creates the schema and the signing key; the others start together.
        spawn("w1")
        _wait_ready(f"http://127.0.0.1:{ports['w1']}", workers["w1"], workdir / "w1.log", 60)
        for i in range(2, n + 1):
            spawn(f"w{i}")
        for name, proc in workers.items():
            _wait_ready(f"http://127.0.0.1:{ports[name]}", proc, workdir / f"{name}.log", 60)
        server = Cluster(label, __version__, f"http://127.0.0.1:{ports['w1']}", workers["w1"],
                         workdir / "w1.log", as_token=as_token, dbname=url.rsplit("/", 1)[1],
                         workers=workers)
        server.on_stop.append(drop)
        if bus:
            lb_port = free_port()
            cfg = workdir / "haproxy.cfg"
            cfg.write_text(balancer_config(n, balancer_cfg))
            lb_env = {**os.environ, "VECHE_LB_BIND": f"127.0.0.1:{lb_port}",
                      **{f"VECHE_W{i}": f"127.0.0.1:{ports[f'w{i}']}" for i in range(1, n + 1)}}
            server.balancer = _spawn([haproxy_binary(), "-db", "-f", str(cfg)], lb_env,
                                     workdir / "haproxy.log")
            server.base_url = f"http://127.0.0.1:{lb_port}"
            _wait_ready(server.base_url, server.balancer, workdir / "haproxy.log", 30)
    except BaseException:
        for proc in workers.values():
            _stop(proc)
        drop()
        raise
    return server


@dataclass
class CpuWindow:
    """Where CPU went between `open` and `close`, in CPU-seconds, by component."""
    elapsed: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    # Run-queue wait by component, summed over its threads: time ready to run and not
    # running (the machine was busy).
    waits: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _generator_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def cpu_window(server: Cluster) -> Iterator[CpuWindow]:
    """Measures the enclosed block: each Veche process (w1, w2, …), this database's
    PostgreSQL backends ("postgres"), PostgreSQL's shared processes ("postgres_shared"),
    HAProxy, NATS, this load generator, and the whole machine ("machine": every process on
    it, other sessions' included)."""
    def others() -> dict[int, str]:
        out = {pid: "nats" for pid in pids_named("nats-server")}
        if server.balancer is not None:
            out[server.balancer.pid] = "haproxy"
        return out

    window = CpuWindow()
    workers0 = {name: proc_cpu(p.pid) for name, p in server.workers.items()}
    pg0, shared0 = server.postgres_pids()
    pg0_cpu = {pid: proc_cpu(pid) for pid in pg0 + shared0}
    wait0 = {pid: runqueue_wait(pid) for pid in
             [p.pid for p in server.workers.values()] + pg0 + [os.getpid()]}
    others0 = {pid: proc_cpu(pid) for pid in others()}
    gen0, busy0, t0 = _generator_cpu(), machine_busy(), time.perf_counter()
    yield window
    window.elapsed = time.perf_counter() - t0
    busy1, gen1 = machine_busy(), _generator_cpu()
    parts = window.parts
    for name, p in server.workers.items():
        parts[name] = proc_cpu(p.pid) - workers0[name]
    parts["veche"] = sum(parts[name] for name in server.workers)
    pg1, shared1 = server.postgres_pids()
    # A backend that started during the window spent all its CPU in it; one that ended
    # took its CPU with it (counted, to say so).
    parts["postgres"] = sum(proc_cpu(pid) - pg0_cpu.get(pid, 0.0) for pid in pg1)
    parts["postgres_shared"] = sum(proc_cpu(pid) - pg0_cpu.get(pid, 0.0) for pid in shared1)
    gone = set(pg0) - set(pg1)
    if gone:
        window.notes.append(f"{len(gone)} PostgreSQL backend(s) ended in the window, uncounted")
    for pid, what in others().items():
        parts[what] = parts.get(what, 0.0) + proc_cpu(pid) - others0.get(pid, 0.0)
    parts.setdefault("haproxy", 0.0)
    parts.setdefault("nats", 0.0)
    parts["generator"] = gen1 - gen0
    parts["machine"] = busy1 - busy0
    ours = sum(parts[k] for k in ("veche", "postgres", "postgres_shared", "haproxy", "nats",
                                  "generator"))
    parts["rest_of_machine"] = max(0.0, parts["machine"] - ours)
    for name, p in server.workers.items():
        window.waits[name] = runqueue_wait(p.pid) - wait0[p.pid]
    window.waits["veche"] = sum(window.waits[name] for name in server.workers)
    window.waits["postgres"] = sum(runqueue_wait(pid) - wait0.get(pid, 0.0) for pid in pg1)
    window.waits["generator"] = runqueue_wait(os.getpid()) - wait0[os.getpid()]
