"""The results table (Markdown), with the ratio of Veche to Synapse and the issue's targets."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from bench.scenarios import Sizes

# (scenario, metric, label, target for Veche / Synapse or None, lower is better)
ROWS: list[tuple[str, str, str, float | None, bool]] = [
    ("chat", "cpu_s_per_1000_msgs", "server CPU-s per 1,000 messages", 0.1, True),
    ("chat", "cpu_s_per_1000_deliveries", "server CPU-s per 1,000 deliveries", None, True),
    ("chat", "messages_per_s", "messages/s (send to all readers)", None, False),
    ("chat", "latency_p50_ms", "send-to-sync p50 (ms)", None, True),
    ("chat", "latency_p99_ms", "send-to-sync p99 (ms)", 0.1, True),
    ("idle", "rss_idle_mb", "RSS idle after start (MB)", 0.5, True),
    ("chat", "rss_before_chat_mb", "RSS before chat load (MB)", None, True),
    ("chat", "rss_after_chat_mb", "RSS after chat load (MB)", None, True),
    ("many_rooms", "setup_s", "many rooms: setup (s)", None, True),
    ("many_rooms", "initial_sync_s", "many rooms: initial /sync (s)", None, True),
    ("many_rooms", "initial_sync_kb", "many rooms: initial /sync (KiB)", None, True),
    ("many_rooms", "incremental_sync_ms", "many rooms: incremental /sync (ms)", None, True),
    ("idle_polls", "polls_held", "long-polls held and woken", None, False),
    ("idle_polls", "rss_growth_mb", "RSS growth holding them (MB)", None, True),
    ("idle_polls", "wake_all_s", "one message reaching all (s)", None, True),
    ("join_and_read", "joins_s", "joins (s)", None, True),
    ("join_and_read", "history_fill_s", "history fill (s)", None, True),
    ("join_and_read", "paginate_s", "/messages back through history (s)", None, True),
    ("heavy_search", "fill_s", "heavy search: filling its room (s)", None, True),
    ("heavy_search", "search_s", "heavy search: one broad /search (s)", None, True),
    ("heavy_search", "searches", "heavy search: searches while waking", None, False),
    ("heavy_search", "search_loop_s", "heavy search: each of them, p50 (s)", None, True),
    ("heavy_search", "wake_p50_ms", "/sync wake-up p50, no search (ms)", None, True),
    ("heavy_search", "wake_p99_ms", "/sync wake-up p99, no search (ms)", None, True),
    ("heavy_search", "wake_searching_p50_ms", "/sync wake-up p50, searching (ms)", None, True),
    ("heavy_search", "wake_searching_p99_ms", "/sync wake-up p99, searching (ms)", None, True),
    ("big_room", "setup_s", "big room: registering and joining its members (s)", None, True),
    ("big_room", "small_cpu_ms_per_msg", "server CPU-ms per message, room of 5", None, True),
    ("big_room", "big_cpu_ms_per_msg", "server CPU-ms per message, big room", None, True),
    ("big_room", "big_over_small", "big room / room of 5, CPU per message (median of cycles)",
     None, True),
    ("big_room", "big_over_small_min", "  lowest cycle", None, True),
    ("big_room", "big_over_small_max", "  highest cycle", None, True),
    ("shaped_link", "first_list_s", "shaped link: first room list, sliding sync (s)", 0.5, True),
    ("shaped_link", "first_list_kib", "shaped link: first room list (KiB received)", 0.5, True),
    ("shaped_link", "initial_sync_s", "shaped link: initial /sync, Element's filter (s)", 0.8, True),
    ("shaped_link", "initial_sync_kib", "shaped link: initial /sync (KiB received)", 0.8, True),
    ("shaped_link", "browser_sync_s", "shaped link: the same, a browser's Accept-Encoding (s)",
     None, True),
    ("shaped_link", "browser_sync_kib", "shaped link: the same (KiB received)", None, True),
    ("shaped_link", "live_p50_ms", "shaped link: live send-to-arrival p50 (ms)", None, True),
    ("shaped_link", "live_p99_ms", "shaped link: live send-to-arrival p99 (ms)", 1.0, True),
    ("shaped_link", "live_bytes_per_msg", "shaped link: response bytes per delivered message",
     0.7, True),
    ("shaped_link", "live_lost", "shaped link: live messages lost", None, True),
]


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's results over several cycles: each number is the median of the cycles'
    (a scenario that failed in any cycle shows that cycle's error)."""
    if len(runs) == 1:
        return runs[0]
    out: dict[str, Any] = {"version": runs[0].get("version")}
    for key, first in runs[0].items():
        if not isinstance(first, dict):
            continue
        failed = [r[key] for r in runs if "error" in r.get(key, {"error": "missing"})]
        if failed:
            out[key] = failed[0] if "error" in failed[0] else {"error": "missing in a cycle"}
            continue
        out[key] = {m: statistics.median(r[key][m] for r in runs) for m in first}
    return out


# Pairs of servers compared in the ratio column: (label, ratio of the two values, with targets).
COMPARE: dict[tuple[str, str], tuple[str, Callable[[float, float], float], bool]] = {
    ("veche", "synapse"): ("Veche / Synapse", lambda a, b: a / b, True),
    ("veche", "veche-postgres"): ("PostgreSQL / SQLite", lambda a, b: b / a, False),
}
ORDER = ("veche", "veche-postgres", "synapse")
LABELS = {"veche": "Veche", "veche-postgres": "Veche on PostgreSQL", "synapse": "Synapse"}


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


# (role, metric, label, target for Veche / Synapse or None). The Veche column is Veche in
# that role (receiving from Synapse, or sending to it), the Synapse column Synapse.
FEDERATION_ROWS: list[tuple[str, str, str, float | None]] = [
    ("receive", "receive_cpu_s_per_1000", "receiving server CPU-s per 1,000 PDUs", 0.1),
    ("receive", "receive_cpu_s_per_1000_net", "the same, idle CPU subtracted", 0.1),
    ("send", "send_cpu_s_per_1000", "sending server CPU-s per 1,000 messages", None),
    ("send", "send_cpu_s_per_1000_net", "the same, idle CPU subtracted", None),
    ("send", "send_s", "sending them, one after the other (s)", None),
    ("receive", "wall_s", "first send to the last one in the receiver's /sync (s)", None),
]


def _federation_rows(fed: dict[str, Any], suffix: str, heading: str,
                     targets: bool) -> tuple[list[str], list[str]]:
    lines, verdicts = [f"| **{heading}** | | | | |"], []
    for role, metric, label, target in FEDERATION_ROWS:
        # Receiving: Veche receives what Synapse's user sent (to_veche), and the other way.
        # Sending: Veche sends what Synapse receives (to_synapse), and the other way.
        v_dir, s_dir = ("to_veche", "to_synapse") if role == "receive" else ("to_synapse", "to_veche")
        v, s = fed[v_dir + suffix][metric], fed[s_dir + suffix][metric]
        ratio = v / s if s > 0 else None
        row = [label, _fmt(v), _fmt(s), _fmt(ratio)]
        if target is not None and targets:
            ok = ratio is not None and ratio <= target
            row.append(f"≤ {target:g}: {'met' if ok else 'NOT met'}")
            verdicts.append(f"- {label} ({heading}): {'met' if ok else 'NOT met'} "
                            f"(ratio {_fmt(ratio)}, target ≤ {target:g})")
        else:
            row.append("")
        lines.append("| " + " | ".join(row) + " |")
    return lines, verdicts


def render_federation(fed: dict[str, Any]) -> list[str]:
    lines = ["## Federation", ""]
    if "error" in fed:
        return [*lines, f"Error: {fed['error']}", ""]
    n, rate = int(fed["messages"]), fed["rate"]
    lines += [f"| metric | Veche {fed['veche_version']} | Synapse {fed['synapse_version']} "
              "| Veche / Synapse | target |", "|---|---|---|---|---|"]
    paced = f"{rate:g} messages/s each way" if rate else "as fast as each sender goes"
    rows, verdicts = _federation_rows(fed, "", paced, True)
    lines += rows
    if "to_veche_unpaced" in fed:
        rows, _ = _federation_rows(fed, "_unpaced", "as fast as each sender goes", False)
        lines += rows
    idle = fed["idle_cpu_per_s"]
    lines += ["", "Targets (ratios are Veche / Synapse, same run):", *verdicts, "",
              f"How measured: a Veche and a Synapse on 127.0.0.1 federate over TLS (a test CA, "
              f"server names localhost:<port>), SQLite each, both running at once. Synapse's "
              f"user creates a public room (version {fed['room_version']}), Veche's user joins "
              f"it over federation. After 20 messages each way to warm up and both servers "
              f"idle, Synapse's user sends {n:,} messages one after the other while Veche's "
              "user long-polls /sync; then the same from Veche to Synapse. "
              + (f"First paced at {rate:g} messages/s (one every {1000 / rate:g} ms, the "
                 "same traffic for both receivers), then again as fast as each sender goes "
                 "(the slower receiver then gets fuller transactions). " if rate else "")
              + "A sender never runs more than 50 messages ahead of the receiving user's "
              "/sync (Synapse drops a room's queue of received PDUs at 100). Each window "
              "runs from the first send until the receiving user's /sync has the last "
              "message (all arrived, in order). CPU is each server process's utime+stime "
              "from /proc/<pid>/stat over that window, scaled to 1,000; the receiver's counts "
              "verifying and persisting the PDUs and serving its user's /sync, the sender's "
              "the client sends and the outbound transactions. Idle CPU subtracted: each "
              "server's CPU over a quiet interval before the runs (Veche "
              f"{idle['veche'] * 1000:.1f} ms/s, Synapse {idle['synapse'] * 1000:.1f} ms/s), "
              "times the window's length, taken off.", ""]
    return lines


def render(results: dict[str, Any], sizes: Sizes, command: str, machine: dict[str, str]) -> str:
    names = [n for n in ORDER if n in results]
    compare = COMPARE.get((names[0], names[1])) if len(names) == 2 else None
    head = ["metric", *[f"{LABELS[n]} {results[n].get('version', '')}" for n in names]]
    if compare is not None:
        head += [compare[0], "target"]
    lines = ["# Benchmark results", "",
             f"Command: `{command}`  ", f"Date: {machine.get('date')}  ",
             f"Machine: {machine.get('cpu')}, {machine.get('memory')}, {machine.get('platform')},"
             f" Python {machine.get('python')}", "",
             "Sizes: " + ", ".join(f"{k}={v}" for k, v in vars(sizes).items()), ""]
    if "federation" in results:
        lines += render_federation(results["federation"])
    if not names:
        return "\n".join(lines)
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts = []
    for scenario, metric, label, target, _lower in ROWS:
        values = []
        for n in names:
            section = results[n].get(scenario)
            if section is None:
                values.append(None)
            elif "error" in section:
                values.append("error")
            else:
                values.append(section.get(metric))
        if all(v is None for v in values):
            continue
        row = [label, *[_fmt(v) for v in values]]
        if compare is not None:
            v, s = values
            ratio = (compare[1](v, s) if isinstance(v, float) and isinstance(s, float) and s
                     and v else None)
            row.append(_fmt(ratio))
            if target is not None and compare[2]:
                ok = ratio is not None and ratio <= target
                row.append(f"≤ {target:g}: {'met' if ok else 'NOT met'}")
                verdicts.append(f"- {label}: {'met' if ok else 'NOT met'} "
                                f"(ratio {_fmt(ratio)}, target ≤ {target:g})")
            else:
                row.append("")
        lines.append("| " + " | ".join(row) + " |")
    polls = results.get("veche", {}).get("idle_polls")
    if polls is not None and "error" not in polls:
        held = int(polls["polls_held"])
        verdicts.append(f"- Veche holds {sizes.polls:,} long-polls and wakes them all: "
                        f"{'met' if held == sizes.polls else 'NOT met'} ({held:,} woken)")
    errors = [f"- {n} / {s}: {v['error']}" for n in names for s, v in results[n].items()
              if isinstance(v, dict) and "error" in v]
    if verdicts:
        lines += ["", "Targets (ratios are Veche / Synapse, same run):", *verdicts]
    cycles = results.get("cycles")
    if cycles and compare is not None:
        lines += ["", f"Chat CPU per message, {compare[0]}, cycle by cycle (the table shows "
                  "each metric's median over the cycles):", ""]
        first, second = names
        ratios = []
        for k, (a, b) in enumerate(zip(cycles[first], cycles[second], strict=False)):
            ca, cb = a.get("chat", {}), b.get("chat", {})
            if "cpu_s_per_1000_msgs" not in ca or "cpu_s_per_1000_msgs" not in cb:
                continue
            va, vb = ca["cpu_s_per_1000_msgs"], cb["cpu_s_per_1000_msgs"]
            ratios.append(compare[1](va, vb))
            lines.append(f"- cycle {k + 1}: {_fmt(va)} and {_fmt(vb)} CPU-s per 1,000 "
                         f"messages, ratio {_fmt(ratios[-1])}")
        if ratios:
            lines.append(f"- median ratio {_fmt(statistics.median(ratios))} (lowest "
                         f"{_fmt(min(ratios))}, highest {_fmt(max(ratios))})")
    if errors:
        lines += ["", "Errors:", *errors]
    database = ("SQLite (Veche on PostgreSQL: a fresh database of its own on the local "
                "PostgreSQL server)" if "veche-postgres" in names else "SQLite")
    lines += ["", f"How measured: each server runs alone on 127.0.0.1 with {database}, open "
              "registration and no rate limits; the load generator is one asyncio process on "
              "the same machine. CPU is the server process's utime+stime from /proc/<pid>/stat "
              "over the chat scenario, per message sent (each message is delivered to every "
              "reader). Latency is from the start of the send request to the reader's /sync "
              "response that carries it. Wall-clock figures are noisy on a shared 2-core "
              "machine; CPU per message is the steadier figure.", ""]
    if any("shaped_link" in results[n] for n in names):
        lines += _shaped_notes(results, names, sizes)
    if any("big_room" in results[n] for n in names):
        lines += [f"Big room: {sizes.big_room_messages:,} messages in all, half into a room of 5 "
                  f"members and half into one of {sizes.big_room_members:,}, in cycles of "
                  "four rounds of 100 (small, big, big, small), from 4 senders while a fifth "
                  "member long-polls /sync; CPU per message counts the sends and that delivery; "
                  "the ratio is the median of the cycles' ratios.", ""]
    return "\n".join(lines)


def _shaped_notes(results: dict[str, Any], names: list[str], sizes: Sizes) -> list[str]:
    lines = []
    for n in names:
        section = results[n].get("shaped_link") or {}
        for key in ("skipped", "first_list_skipped"):
            if key in section:
                lines.append(f"Shaped link, {n}: {key.replace('_', ' ')}: {section[key]}  ")
        for phase in ("first_list", "initial_sync", "browser_sync", "live"):
            link = section.get(phase)
            if isinstance(link, dict):
                lines.append(f"Shaped link, {n}, {phase.replace('_', ' ')}: on the link "
                             f"{link['link_down_kib']:.1f} KiB down, {link['link_up_kib']:.1f} KiB "
                             f"up (IP packets, retransmissions included), "
                             f"{link['link_lost_packets']} packets lost  ")
    lines += ["", f"Shaped link: one user in {sizes.shaped_rooms} rooms of "
              f"{sizes.shaped_messages} messages, syncing through a user-space shaper "
              "(bench/shaper.py: a TUN device in a network namespace of its own, 64 kbit/s "
              "shared by both directions, 500 ms one-way delay, 3 % loss drawn per packet from "
              "a fixed seed, started again at each measured phase so both servers see the same "
              "sequence, a 1,000-packet queue); "
              "Synapse with `compress: true` on its client listener. The client sends "
              "`Accept-Encoding: gzip` as phones' HTTP libraries do (and a browser's "
              "`gzip, deflate, br, zstd` for the second initial /sync) and keeps one "
              "connection. Bytes are the response "
              "status lines, headers and bodies as received. Live: one message every 2 s "
              f"for {sizes.shaped_live_s} s from another user (not through the shaper), "
              "into the rooms in turn, while the user long-polls.", ""]
    return lines
