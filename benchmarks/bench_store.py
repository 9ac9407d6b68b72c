"""Store and scale-out benchmark: evidence write rate per backend, and one vs two relay
replicas over one PostgreSQL.

Method
------
Evidence: 64 concurrent producers each append a response's worth of evidence events
(`--batch`, default 2) and wait for the group commit, for `--duration` seconds, on a
fresh SQLite file and a fresh PostgreSQL schema; events per second committed, median of
`--runs`. This is the path every answer with findings or decisions takes before its
last byte leaves.

Replicas: a mock upstream and `orca-relay serve` replicas (uvloop, one worker each) on
one PostgreSQL schema. wrk (closed loop, `chat_post.lua`, the ~2 KB chat request) drives
replica A alone at concurrency 16, then A and B at once (two wrk processes, 8
connections each), `--duration` seconds per point, median of `--runs`. This machine has
two cores shared by the replicas, wrk, the mock upstream and PostgreSQL: the figure shows
that replicas share the store correctly under load, not how they scale on real hosts.

Writes benchmarks/SCALE_RESULTS.md. Needs wrk and a PostgreSQL server
(ORCA_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
from bench_relay import (
    BenchError,
    Processes,
    Target,
    chat_body,
    free_port,
    http_ok,
    machine_facts,
    orca_relay,
    port_open,
    run_wrk,
    say,
    wait_until,
)

from relay.evidence import EvidenceEvent
from relay.store.base import open_store
from relay.store.postgres import split_url

HERE = Path(__file__).resolve().parent
PRODUCERS = 64
FIELDS = {"mode": "enforce", "verdict": "mask", "outcome": "masked", "would_have": False,
          "guardrail_id": "gr_bench", "rule_id": "mask-pii", "detector": "email_address",
          "category": "pii", "location": {"stage": "output", "path": "choices[0].message"},
          "snippet": "ja**********rg", "value_hmac": "0" * 64}


async def evidence_rate(url: str, seconds: float, batch: int) -> float:
    store = open_store(url)
    await store.open()
    try:
        workspace = await store.create_workspace("bench", "paid")
        done = 0
        deadline = time.monotonic() + seconds

        async def produce() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                events = [EvidenceEvent(workspace.id, "guardrail", "req_bench", "key_bench",
                                        FIELDS) for _ in range(batch)]
                await store.append_events(events)
                done += batch

        started = time.monotonic()
        await asyncio.gather(*(produce() for _ in range(PRODUCERS)))
        return done / (time.monotonic() - started)
    finally:
        await store.close()


async def _schema(url: str, sql: str) -> None:
    conn = await asyncpg.connect(split_url(url)[0], timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_schema(url: str) -> tuple[str, str]:
    """(a URL that sees only a new schema, the schema's name)."""
    name = f"orca_bench_{secrets.token_hex(5)}"
    asyncio.run(_schema(url, f"CREATE SCHEMA {name}"))
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}search_path={name}", name


def start_replica(procs: Processes, name: str, upstream: str, database_url: str, key_file: str,
                  cpu: int) -> tuple[Target, str]:
    port, admin = free_port(), free_port()
    env = {"ORCA_UPSTREAM_URL": upstream, "ORCA_RELAY_LISTEN": f"127.0.0.1:{port}",
           "ORCA_ADMIN_LISTEN": f"127.0.0.1:{admin}", "ORCA_DATABASE_URL": database_url,
           "ORCA_SIGNING_KEY_FILE": key_file, "ORCA_LOG_LEVEL": "warning",
           "ORCA_DATA_DIR": tempfile.mkdtemp(prefix="orca-bench-", dir=procs.workdir)}
    proc = procs.start(name, [orca_relay(), "serve"], cpu, env)
    for url in (f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{admin}/healthz"):
        wait_until(proc, url, functools.partial(http_ok, url))
    return Target(name, f"http://127.0.0.1:{port}", "", proc), proc.stdout.read_text()


def replicas(opts: argparse.Namespace, workdir: Path, pg: str) -> dict[str, list[float]]:
    database_url, schema = fresh_schema(pg)
    body = workdir / "chat.json"
    body.write_bytes(chat_body())
    procs = Processes(workdir)
    try:
        port = free_port()
        mock = procs.start("mock", [orca_relay(), "mock-upstream", "--port", str(port)], 1)
        wait_until(mock, f"port {port}", lambda: port_open(port))
        upstream = f"http://127.0.0.1:{port}/v1"
        key_file = str(workdir / "signing" / "ed25519.pem")
        a, banner = start_replica(procs, "replica-a", upstream, database_url, key_file, 0)
        b, _ = start_replica(procs, "replica-b", upstream, database_url, key_file, 1)
        key = next(w for w in banner.split() if w.startswith("sk-orca-"))
        a, b = (Target(t.name, t.base_url, key, t.proc) for t in (a, b))
        figures: dict[str, list[float]] = {"one": [], "two": []}
        for run in range(opts.runs):
            figures["one"].append(run_wrk(a, 16, opts.duration, body, 1).rps)
            with ThreadPoolExecutor(2) as pool:  # both wrk runs at once, one per replica
                both = list(pool.map(lambda t: run_wrk(t, 8, opts.duration, body, 1).rps,
                                     (a, b)))
            figures["two"].append(sum(both))
            say(f"  run {run + 1}: one replica {figures['one'][-1]:,.0f} rps, two "
                f"{figures['two'][-1]:,.0f} rps")
        return figures
    finally:
        procs.stop_all()
        asyncio.run(_schema(pg, f"DROP SCHEMA {schema} CASCADE"))


def _into_results(text: str) -> None:
    """RESULTS.md carries this run too, as a section bench_relay.py keeps when it rewrites."""
    results = HERE / "RESULTS.md"
    old = results.read_text() if results.exists() else ""
    section = "<!-- scale-out -->\n" + text.replace("# Store and scale-out", "## Store and "
                                                      "scale-out", 1) + "\n<!-- /scale-out -->\n"
    marked = re.compile(r"<!-- scale-out -->.*?<!-- /scale-out -->\n", re.S)
    new = marked.sub(lambda _: section, old) if marked.search(old) else old + "\n" + section
    results.write_text(new)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per point")
    parser.add_argument("--batch", type=int, default=2, help="events per append")
    parser.add_argument("--results", type=Path, default=HERE / "SCALE_RESULTS.md")
    opts = parser.parse_args(argv)
    pg = os.environ.get("ORCA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    started = dt.datetime.now(dt.UTC)
    rates: dict[str, list[float]] = {"sqlite": [], "postgres": []}
    try:
        with tempfile.TemporaryDirectory(prefix="orca-bench-store-") as tmp:
            for run in range(opts.runs):
                rates["sqlite"].append(asyncio.run(evidence_rate(
                    f"sqlite:///{tmp}/run{run}.db", opts.duration, opts.batch)))
                url, schema = fresh_schema(pg)
                try:
                    rates["postgres"].append(asyncio.run(evidence_rate(
                        url, opts.duration, opts.batch)))
                finally:
                    asyncio.run(_schema(pg, f"DROP SCHEMA {schema} CASCADE"))
                say(f"  evidence run {run + 1}: sqlite {rates['sqlite'][-1]:,.0f}/s, "
                    f"postgres {rates['postgres'][-1]:,.0f}/s")
            figures = replicas(opts, Path(tmp), pg)
    except BenchError as exc:
        sys.stderr.write(f"bench_store: {exc}\n")
        return 1
    med = statistics.median
    lines = ["# Store and scale-out benchmark", "",
             f"Generated by `python benchmarks/bench_store.py` on {started:%Y-%m-%d %H:%M} "
             "UTC; method in the script's docstring.", "", *machine_facts(), "",
             f"| figure | median of {opts.runs} | every run |", "|---|---|---|",
             f"| evidence events/s, SQLite (target ≥ 20,000) | {med(rates['sqlite']):,.0f} | "
             + ", ".join(f"{r:,.0f}" for r in rates["sqlite"]) + " |",
             f"| evidence events/s, PostgreSQL | {med(rates['postgres']):,.0f} | "
             + ", ".join(f"{r:,.0f}" for r in rates["postgres"]) + " |",
             f"| relay RPS, one replica on PostgreSQL (c=16) | {med(figures['one']):,.0f} | "
             + ", ".join(f"{r:,.0f}" for r in figures["one"]) + " |",
             f"| relay RPS, two replicas on PostgreSQL (c=8 each) | {med(figures['two']):,.0f} | "
             + ", ".join(f"{r:,.0f}" for r in figures["two"]) + " |", ""]
    opts.results.write_text("\n".join(lines))
    _into_results("\n".join(lines))
    say("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
