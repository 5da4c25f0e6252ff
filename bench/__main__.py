"""`python -m bench`: run every scenario against Veche and Synapse and write the table."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import resource
import shlex
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import aiohttp

from bench import federation, netns, report, shaped
from bench.scenarios import SCENARIOS, VECHE_ONLY, Api, Sizes
from bench.servers import Server, start_synapse, start_veche, start_veche_postgres

STARTERS = {"veche": start_veche, "veche-postgres": start_veche_postgres,
            "synapse": start_synapse}
# Scenarios that need both servers at once, run once for the pair after the others.
PAIR_SCENARIOS = {"federation": federation.run_pair}
# Run only when named: it re-executes the benchmark in a network namespace of its own.
NAMED_ONLY = {"shaped_link": shaped.shaped_link}


async def run_server(server: Server, sizes: Sizes, only: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {"version": server.version}
    await asyncio.sleep(3)  # let start-up work settle before measuring memory
    results["idle"] = {"rss_idle_mb": server.rss_mb()}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        api = Api(server.base_url, session)
        for name in only:
            print(f"  {server.name}: {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                results[name] = await {**SCENARIOS, **NAMED_ONLY}[name](server, api, sizes)
            except Exception as e:  # one failing scenario must not hide the others
                traceback.print_exc()
                results[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
            print(f"  {server.name}: {name} done in {time.perf_counter() - t0:.1f}s",
                  file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--servers", default="veche,synapse",
                        help="comma-separated: veche, veche-postgres (Veche on a fresh"
                        " PostgreSQL database, VECHE_BENCH_POSTGRES), synapse (default"
                        " veche,synapse)")
    parser.add_argument("--cycles", type=int, default=1,
                        help="run the servers this many times, alternating, each fresh; the"
                        " table shows each metric's median and the chat CPU ratio of each"
                        " cycle (default 1)")
    parser.add_argument("--scenarios", default=None,
                        help=f"comma-separated subset of"
                        f" {', '.join([*SCENARIOS, *PAIR_SCENARIOS, *NAMED_ONLY])}"
                        f" (default all but {', '.join(NAMED_ONLY)};"
                        f" {', '.join(VECHE_ONLY)} only against Veche unless named;"
                        f" {', '.join(PAIR_SCENARIOS)} only when both servers are)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--out", default=str(Path(__file__).parent / "RESULTS.md"),
                        help="where to write the table (default bench/RESULTS.md)")
    for name, default in vars(Sizes()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"default {default}")
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in vars(sizes):
        value = getattr(args, name)
        if value is not None:
            setattr(sizes, name, value)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    named = args.scenarios is not None
    every = [*SCENARIOS, *PAIR_SCENARIOS]
    only = [s.strip() for s in (args.scenarios or ",".join(every)).split(",") if s.strip()]
    unknown = [s for s in servers if s not in STARTERS] + [
        s for s in only if s not in every and s not in NAMED_ONLY]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    skipped: dict[str, str] = {}
    if "shaped_link" in only and not netns.inside():
        reason = netns.unavailable()
        if reason is None:
            netns.reexec(argv if argv is not None else sys.argv[1:])
        print(f"shaped_link skipped: {reason}", file=sys.stderr, flush=True)
        skipped["shaped_link"] = str(reason)
        only.remove("shaped_link")
    if netns.inside():
        netns.prepare()
    both = {"veche", "synapse"} <= set(servers)
    pairs = [s for s in only if s in PAIR_SCENARIOS]
    if pairs and not both and named:
        parser.error(f"{', '.join(pairs)} needs both servers: --servers veche,synapse")
    pairs = pairs if both else []
    # On SIGTERM (e.g. `timeout`), stop the servers as on ^C: they run in sessions of their own.
    signal.signal(signal.SIGTERM, _interrupt)
    # 2,000 long-polls need more descriptors than the default soft limit, for us and servers.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    runs: dict[str, list[dict[str, Any]]] = {}
    for cycle in range(max(1, args.cycles)):
        for name in servers:
            mine = [s for s in only if s in NAMED_ONLY or s in SCENARIOS
                    and (named or name.startswith("veche") or s not in VECHE_ONLY)]
            if not mine and (pairs or skipped):
                for scenario, reason in skipped.items():
                    runs.setdefault(name, [{}])[0][scenario] = {"skipped": reason}
                continue  # only the pair's scenarios were asked for, or nothing can run
            print(f"{name}: starting (cycle {cycle + 1})", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(prefix="veche-bench-") as tmp:
                if name == "synapse" and "shaped_link" in mine:
                    # Synapse at its best on a slow link: its client listener compresses.
                    server = start_synapse(Path(tmp), compress=True)
                else:
                    server = STARTERS[name](Path(tmp))
                try:
                    runs.setdefault(name, []).append(
                        asyncio.run(run_server(server, sizes, mine)))
                finally:
                    server.stop()
    results: dict[str, Any] = {name: report.median_run(r) for name, r in runs.items()}
    if args.cycles > 1:
        results["cycles"] = runs
    with tempfile.TemporaryDirectory(prefix="veche-bench-") as tmp:
        for name in pairs:
            results[name] = PAIR_SCENARIOS[name](Path(tmp) / name, sizes)
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = report.render(results, sizes, command.strip(), _machine())
    print(text)
    Path(args.out).write_text(text)
    failed = [f"{s}/{n}" for s, r in results.items() if s in STARTERS for n, v in r.items()
              if isinstance(v, dict) and "error" in v]
    failed += [s for s in pairs if "error" in results[s]]
    if failed:
        print(f"scenarios failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _machine() -> dict[str, str]:
    info = {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "platform": platform.platform()}
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
              if ln.startswith("model name")]
    info["cpu"] = f"{len(models)} x {models[0]}" if models else platform.processor()
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    for ln in meminfo.splitlines():
        if ln.startswith("MemTotal:"):
            info["memory"] = f"{int(ln.split()[1]) / 1024 / 1024:.1f} GiB"
    return info


if __name__ == "__main__":
    sys.exit(main())
