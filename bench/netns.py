"""The network namespace the shaped-link benchmark runs in (see bench/shaper.py).

`python -m bench --scenarios shaped_link` re-executes itself under `unshare --net`: a fresh
namespace holds the servers, the clients and the shaper, so nothing leaves it and nothing
outside is changed. Inside, loopback is brought up with LOCAL (10.77.0.1) on it, where the
shaper delivers, and the servers listen on every address of the namespace. Set-up traffic
(registering, filling rooms) goes to 127.0.0.1 at full speed; the measured client goes to
SERVER_ALIAS, through the shaper.

Where namespaces or TUN are unavailable (no root, a container without CAP_NET_ADMIN, no
/dev/net/tun) the scenario is skipped with a line saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.shaper import DEVICE, FAR_NET, LOCAL

ENV_FLAG = "VECHE_BENCH_NETNS"
# A file to append every packet offered to the shaped link to (bench/shaper.py --trace).
TRACE_ENV = "VECHE_BENCH_SHAPER_TRACE"


def inside() -> bool:
    return os.environ.get(ENV_FLAG) == "1"


def unavailable() -> str | None:
    """Why the shaped link cannot be made here, or None if it can."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return "needs unshare (util-linux) and ip (iproute2) on PATH"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "no usable /dev/net/tun"
    probe = subprocess.run(
        [unshare, "--net", "--", sys.executable, "-c",
         "import bench.shaper as s, os; os.close(s.open_tun('vecheprobe'))"],
        capture_output=True, text=True, cwd=Path(__file__).parents[1])
    if probe.returncode != 0:
        return f"cannot make a network namespace with a TUN device: {probe.stderr.strip()[-200:]}"
    return None


def reexec(argv: list[str]) -> None:
    """Run this benchmark command again inside a new network namespace (does not return)."""
    env = {**os.environ, ENV_FLAG: "1"}
    cmd = ["unshare", "--net", "--", sys.executable, "-m", "bench", *argv]
    print("shaped_link: re-running inside a network namespace: " + " ".join(cmd[4:]),
          file=sys.stderr, flush=True)
    os.execvpe("unshare", cmd, env)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def prepare() -> None:
    """Inside the namespace, once: loopback up, with the address the shaper delivers to."""
    from bench import servers

    _ip("link", "set", "lo", "up")
    _ip("addr", "add", f"{LOCAL}/32", "dev", "lo")
    servers.BIND_HOST = "0.0.0.0"  # noqa: S104 - the namespace has no way out


class ShapedLink:
    """The running shaper; `stats()` reads its byte counters."""

    def __init__(self, proc: subprocess.Popen[str], stats_path: Path) -> None:
        self.proc = proc
        self.stats_path = stats_path

    def reseed(self, phase: str = "") -> None:
        """The loss sequence starts again from its seed (a new measured phase, named in the
        packet trace if one is written)."""
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.1)
        if os.environ.get(TRACE_ENV):
            with open(os.environ[TRACE_ENV], "a") as trace:
                trace.write(json.dumps({"t": round(time.monotonic(), 4), "phase": phase}) + "\n")

    def stats(self) -> dict[str, int]:
        time.sleep(0.6)  # the shaper writes them every half second
        try:
            return json.loads(self.stats_path.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}


@contextlib.contextmanager
def shaped_link(seed: int | None = None) -> Iterator[ShapedLink]:
    """A shaper (a fresh one: the loss sequence starts again from its seed) and the route
    through it, for the time of the block."""
    with tempfile.TemporaryDirectory(prefix="veche-shaper-") as tmp:
        stats = Path(tmp) / "stats.json"
        cmd = [sys.executable, "-m", "bench.shaper", "--stats", str(stats)]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        if os.environ.get(TRACE_ENV):
            cmd += ["--trace", os.environ[TRACE_ENV]]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).parents[1])
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the shaper did not start")
            _ip("link", "set", DEVICE, "up")
            _ip("route", "add", FAR_NET, "dev", DEVICE, "src", LOCAL)
            yield ShapedLink(proc, stats)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
