"""Firewall benchmark: the relay with a 200-rule enforcing policy vs the relay with none.

Method
------
One mock upstream answers every chat with five tool calls whose arguments carry URLs
(`orca-relay mock-upstream --tool-calls …`). Two relays (`orca-relay serve` as shipped:
uvloop, one worker) run side by side on that upstream:

  relay           no controls
  relay+firewall  a 200-rule policy in enforce mode (tool globs, host patterns and CIDRs,
                  argument constraints, the no_private_egress preset) that allows this
                  traffic, so every subject is decided and recorded but nothing is denied

wrk (closed loop, one thread, `chat_post.lua`) POSTs one chat request offering 20 tools;
each answer carries 5 calls, so the firewall decides 20 tool definitions, 5 calls and
their hosts per request and writes one evidence event per decision. Relays run on one
CPU, the mock upstream and wrk on the other. Points are interleaved (the target order
rotates per run) and repeated; tables quote medians. Per point the script records the
relay process's CPU time per request, from /proc.

Writes benchmarks/FIREWALL_RESULTS.md. `--quick` is a smoke run of under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_relay import (
    BenchError,
    Proc,
    Processes,
    Target,
    WrkResult,
    free_port,
    machine_facts,
    orca_relay,
    port_open,
    run_wrk,
    say,
    source_digest,
    start_relay,
    wait_until,
)

HERE = Path(__file__).resolve().parent
RELAY, RELAY_FW = "relay", "relay+firewall"
TOOLS = [f"tool_{i:02d}" for i in range(20)]
CALLS = [{"name": TOOLS[i], "arguments": json.dumps(
    {"url": f"https://api.example.com/v1/items/{i}?expand=owner", "query": "quarterly report",
     "limit": 10 + i})} for i in range(5)]


def policy_document() -> dict[str, object]:
    """200 rules, none of which denies the benchmark's traffic."""
    rules: list[dict[str, object]] = [{"preset": "no_private_egress"}]
    for i in range(60):
        rules.append({"id": f"deny-tool-{i}", "effect": "deny", "tools": [f"danger_{i}_*"]})
    for i in range(50):
        rules.append({"id": f"deny-host-{i}", "effect": "deny",
                      "hosts": [f"*.blocked{i}.example", f"10.{i}.0.0/16"]})
    for i in range(49):
        rules.append({"id": f"limit-{i}", "effect": "deny", "tools": [f"tool_{i % 20:02d}"],
                      "args": [{"path": "limit", "min": 1000 + i}]})
    for i in range(40):
        rules.append({"id": f"allow-{i}", "effect": "allow", "tools": [f"safe_{i}"]})
    assert len(rules) == 200
    return {"schema": 1, "default": "allow", "combining": "first-match", "rules": rules}


def chat_body() -> bytes:
    tools = [{"type": "function", "function": {
        "name": name, "description": f"Look up {name} records by URL.",
        "parameters": {"type": "object", "properties": {"url": {"type": "string"}}}}}
        for name in TOOLS]
    body = {"model": "gpt-4o-mini", "tools": tools, "messages": [
        {"role": "system", "content": "You are an operations assistant."},
        {"role": "user", "content": "Pull the quarterly items for the five accounts."}]}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Options:
    runs: int
    duration: int
    concurrencies: tuple[int, ...]
    warmup: int
    target_cpu: int
    load_cpu: int
    results: Path
    command: str


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="orca-relay with a 200-rule firewall policy vs with none, one run.")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (median quoted)")
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk point")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    parser.add_argument("--target-cpu", type=int, default=0, help="CPU for the relays")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU for upstream and wrk")
    parser.add_argument("--results", type=Path, default=HERE / "FIREWALL_RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="1 run, 2 s points, c=1,16")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.concurrency, args.warmup = 1, 2, "1,16", 1
    return Options(args.runs, args.duration,
                   tuple(int(c) for c in args.concurrency.split(",")), args.warmup,
                   args.target_cpu, args.load_cpu, args.results,
                   " ".join(["python", "benchmarks/bench_firewall.py", *(argv or sys.argv[1:])]))


def start_mock(procs: Processes, cpu: int) -> str:
    port = free_port()
    argv = [orca_relay(), "mock-upstream", "--host", "127.0.0.1", "--port", str(port),
            "--tool-calls", json.dumps(CALLS)]
    proc = procs.start("mock", argv, cpu)
    wait_until(proc, f"port {port}", lambda: port_open(port))
    return f"http://127.0.0.1:{port}/v1"


def add_policy(data_dir: str, proc: Proc, document: Path, seen_dirs: list[str]) -> None:
    seen_dirs.append(data_dir)
    workspace = re.search(r"workspace\s+(ws_[0-9a-f]+)", proc.stdout.read_text())
    if workspace is None:
        raise BenchError("cannot find the bootstrap workspace id in the relay's output")
    subprocess.run(
        [orca_relay(), "firewall", "create", "--workspace", workspace.group(1), "--name",
         "bench-200",
         "--mode", "enforce", "--policy", f"@{document}", "--data-dir", data_dir],
        check=True, capture_output=True, timeout=60)
    time.sleep(1.5)  # two refresh intervals: the relay reads policies on its own clock


def check(target: Target, body: bytes) -> int:
    """One request by hand; returns the number of calls in the answer."""
    request = urllib.request.Request(target.url, data=body, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {target.key}"})
    try:
        with urllib.request.urlopen(request, timeout=10.0) as resp:
            answer = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{target.name}: a chat request failed: {exc}\n"
                         f"{target.proc.tail()}") from None
    return len(answer["choices"][0]["message"].get("tool_calls") or [])


def decisions_total(admin: str) -> float:
    with urllib.request.urlopen(admin + "/metrics", timeout=10.0) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("orca_relay_firewall_decisions_total{"))


Points = dict[tuple[str, int], list[WrkResult]]


def evidence_rows(data_dir: str) -> int:
    """Evidence events in the relay's SQLite file (read-only; the relay keeps writing)."""
    path = Path(data_dir) / "orca.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM evidence_events").fetchone()[0]
        return count


def measure(opts: Options, workdir: Path) -> tuple[Points, tuple[float, int]]:
    body_file = workdir / "chat.json"
    body_file.write_bytes(chat_body())
    policy_file = workdir / "policy.json"
    policy_file.write_text(json.dumps(policy_document()))
    procs = Processes(workdir)
    try:
        upstream = start_mock(procs, opts.load_cpu)
        plain, _ = start_relay(procs, RELAY, upstream, True, opts.target_cpu)
        data_dirs: list[str] = []
        guarded, admin = start_relay(procs, RELAY_FW, upstream, True, opts.target_cpu,
                                     functools.partial(add_policy, document=policy_file,
                                                       seen_dirs=data_dirs))
        for target in (plain, guarded):
            if check(target, body_file.read_bytes()) != len(CALLS):
                raise BenchError(f"{target.name}: the answer lost tool calls")
        before = decisions_total(admin), evidence_rows(data_dirs[0])
        check(guarded, body_file.read_bytes())
        per_request = (decisions_total(admin) - before[0],
                       evidence_rows(data_dirs[0]) - before[1])
        if per_request[0] == 0:
            raise BenchError("the firewall made no decision: the policy did not load")
        targets = [plain, guarded]
        for target in targets:
            run_wrk(target, max(opts.concurrencies), opts.warmup, body_file, opts.load_cpu)
        points: Points = {}
        for run in range(opts.runs):
            for conc in opts.concurrencies:
                for target in targets[run % 2:] + targets[: run % 2]:
                    result = run_wrk(target, conc, opts.duration, body_file, opts.load_cpu)
                    points.setdefault((target.name, conc), []).append(result)
                    say(f"  run {run + 1}/{opts.runs} c={conc:<3} {target.name:<15} "
                        f"{result.rps:8,.0f} rps  p50 {result.p50_ms:6.3f} ms  "
                        f"cpu {result.cpu_us:5.0f} us/req")
        return points, per_request
    finally:
        procs.stop_all()


def render(opts: Options, points: Points, per_request: tuple[float, int],
           started: dt.datetime) -> str:
    def med(name: str, conc: int, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in points[(name, conc)]))

    lines = ["# Firewall benchmark results", "",
             f"Generated by `{opts.command}` on {started:%Y-%m-%d %H:%M} UTC "
             f"(relay source {source_digest()}); method in the script's docstring.", "",
             *machine_facts(), "",
             f"Per request: 20 tools offered, 5 calls answered; {per_request[0]:.0f} firewall "
             f"decisions with the 200-rule policy, recorded as {per_request[1]} evidence "
             "events (the subjects allowed by the default effect are listed in one event "
             "per stage), committed before each answer leaves.", "",
             "| conc. | relay RPS | relay+firewall RPS | ratio | relay p50 ms | "
             "+firewall p50 ms | added p50 ms | relay CPU µs/req | +firewall CPU µs/req |",
             "|---|---|---|---|---|---|---|---|---|"]
    for conc in opts.concurrencies:
        base, fw = med(RELAY, conc, "rps"), med(RELAY_FW, conc, "rps")
        p50, p50_fw = med(RELAY, conc, "p50_ms"), med(RELAY_FW, conc, "p50_ms")
        lines.append(f"| {conc} | {base:,.0f} | {fw:,.0f} | {fw / base:.2f} | {p50:.3f} | "
                     f"{p50_fw:.3f} | {p50_fw - p50:+.3f} | {med(RELAY, conc, 'cpu_us'):.0f} | "
                     f"{med(RELAY_FW, conc, 'cpu_us'):.0f} |")
    lines += ["", f"Medians of {opts.runs} runs of {opts.duration} s per point. Every run:", ""]
    for (name, conc), results in sorted(points.items()):
        lines.append(f"- {name} c={conc}: " + ", ".join(f"{r.rps:,.0f}" for r in results))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    try:
        with tempfile.TemporaryDirectory(prefix="orca-bench-fw-") as tmp:
            points, per_request = measure(opts, Path(tmp))
    except BenchError as exc:
        sys.stderr.write(f"bench_firewall: {exc}\n")
        return 1
    opts.results.write_text(render(opts, points, per_request, started))
    say(opts.results.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
