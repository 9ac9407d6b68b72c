"""Relay benchmark: orca-relay against a bare aiohttp pass-through and the upstream direct.

Method
------
One mock upstream (`orca-relay mock-upstream`, no model delay) serves seven targets, all
running side by side for the whole run:

  direct           the mock upstream itself
  floor            benchmarks/passthrough.py on the default asyncio loop
  floor+uvloop     the same on uvloop
  relay+uvloop     `orca-relay serve` as shipped (ORCA_UVLOOP=1, one worker, no controls)
  relay-asyncio    the same with ORCA_UVLOOP=0
  relay+guardrail  relay+uvloop with every detector masking, enforced
  relay+soc2       relay+uvloop with the SOC 2 pack installed and live (admin API)

Throughput and latency: wrk, closed loop, one thread, N connections (`-t1 -cN --latency`,
chat_post.lua), POSTing one ~2 KB chat request (system prompt and five turns) with the
relay key, for a fixed duration per point. As in a real chat, the history repeats and the
newest turn is new: each request carries its own conversation ref in the last turn.
Relay and floor processes run on one CPU; the mock upstream, wrk and this script on the
other, so a proxy's figure measures the proxy alone. The direct figure shows what the
load side can do by itself and must stay far above the relay's for the comparison to mean
anything. Points are interleaved (each
run visits every concurrency and every target, in an order rotated per run) and
repeated; tables quote medians of runs, with every run's figures at the end of
RESULTS.md. A shorter pass then repeats concurrency 1 and 64 with every process on one
CPU, the layout TARGETS.md's reference figures were measured in.

Per wrk point the script also records the CPU time the target process used (from
/proc, split into event-loop thread and other threads) and the CPU time other processes
on the machine used meanwhile, so points disturbed by someone else's load are flagged.

Streaming: a raw-socket client sends a streamed chat request (mock: 20 chunks, 2 ms
apart) over one keep-alive connection per target, round-robin across targets request by
request, and times the first body byte after the request was written. Medians per run,
then the median over runs.

Memory: a fresh relay takes non-streamed requests at concurrency 16 until its own request
counter (admin /metrics, orca_relay_requests_total) passes N and then 2N; VmRSS is read
from /proc after every wrk slice.

Every process the script starts is pinned with taskset, gets free ports and a temporary
data directory, and is stopped with SIGTERM (then waited for) however the run ends.

Run `python benchmarks/bench_relay.py --quick` for a smoke run of about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import http.client
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
RELAY_SOURCE = HERE.parent / "relay"
LUA_SCRIPT = HERE / "chat_post.lua"
PASSTHROUGH = HERE / "passthrough.py"
CHAT_PATH = "/v1/chat/completions"
KEY_RE = re.compile(r"sk-orca-[A-Za-z0-9_-]+")
STREAM_HEADERS = {"x-mock-chunks": "20", "x-mock-chunk-delay-ms": "2"}
RSS_CONCURRENCY = 16
ONE_CORE_CONCURRENCIES = (1, 64)
NOISY_PCT = 10.0  # a point is flagged when other processes used this much of a CPU
LOADGEN_HEADROOM = 2.0  # direct RPS must be at least this many times the relay's
STARTUP_TIMEOUT = 30.0
FLAT_MB = 2.0  # "flat": RSS after 2N is at most this much above RSS after N

# From shared/TARGETS.md ("Ours", relay with no controls).
TARGET_TTFB_DELTA_MS = 0.5
TARGET_RSS_MB = 80.0

DIRECT, FLOOR, FLOOR_UV, RELAY_UV, RELAY_AIO, RELAY_GR, RELAY_SOC2 = (
    "direct", "floor", "floor+uvloop", "relay+uvloop", "relay-asyncio", "relay+guardrail",
    "relay+soc2",
)  # fmt: skip
ALL_TARGETS = (DIRECT, FLOOR, FLOOR_UV, RELAY_UV, RELAY_AIO, RELAY_GR, RELAY_SOC2)
PROXIES = ALL_TARGETS[1:]
# relay+guardrail: relay+uvloop with a workspace-default guardrail in enforce mode that
# masks every detector's findings on input and output (every detector runs on every
# request and answer).
EVERY_DETECTOR_RULES = '[{"id": "all", "categories": ["pii", "secret"], "action": "mask"}]'
# relay+soc2: relay+uvloop with the SOC 2 pack installed and live through the admin API
# (its guardrail promoted to workspace default, its firewall policy enforcing, evidence
# written), TARGETS.md's "SOC 2 pack live" reading.
SOC2_TARGET_RATIO = 0.85
SOC2_TARGET_ADDED_P50_MS = 0.5
# The concurrencies TARGETS.md names for the SOC 2 reading; other columns are shown but
# not judged. The no-controls target names none, so every column counts there.
SOC2_TARGET_CONCURRENCIES = frozenset({1, 64})
# (relay, floor, which reading of the target it is, target ratio, concurrencies judged;
# None: every column)
RATIO_PAIRS: tuple[tuple[str, str, str, float, frozenset[int] | None], ...] = (
    (RELAY_UV, FLOOR, "shipped relay vs the bare pass-through (the target's reading)", 1.0,
     None),
    (RELAY_UV, FLOOR_UV, "like for like, both on uvloop", 1.0, None),
    (RELAY_AIO, FLOOR, "like for like, both on asyncio", 1.0, None),
    (RELAY_GR, FLOOR, "every detector on (guardrail masking, enforce) vs the bare pass-through",
     SOC2_TARGET_RATIO, SOC2_TARGET_CONCURRENCIES),
    (RELAY_SOC2, FLOOR, "SOC 2 pack live (every detector, firewall policy, evidence) vs the "
     "bare pass-through", SOC2_TARGET_RATIO, SOC2_TARGET_CONCURRENCIES),
)
# Added p50 over direct at c=1 each relay target must stay within.
ADDED_P50_TARGETS = {RELAY_UV: 0.35, RELAY_AIO: 0.35, RELAY_GR: SOC2_TARGET_ADDED_P50_MS,
                     RELAY_SOC2: SOC2_TARGET_ADDED_P50_MS}


class BenchError(Exception):
    """The benchmark could not run as asked; the message says which target and why."""


# ---- options -------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    runs: int
    duration: int
    concurrencies: tuple[int, ...]
    ttfb_requests: int
    rss_requests: int
    warmup: int
    target_cpu: int
    load_cpu: int
    results: Path
    quick: bool
    command: str


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="orca-relay vs a bare aiohttp pass-through vs the upstream direct: "
        "throughput, latency, stream first byte and RSS, written to benchmarks/RESULTS.md.",
        epilog="Full defaults take about 12 minutes on 2 cores; --quick about 1.",
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions (median quoted)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk point")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated, e.g. 1,16,64")
    parser.add_argument("--ttfb-requests", type=int, default=200,
                        help="streamed requests per target per run")
    parser.add_argument("--rss-requests", type=int, default=100_000,
                        help="N: RSS is read after N and after 2N relay requests")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per target")
    parser.add_argument("--target-cpu", type=int, default=0, help="CPU for relay and floor")
    parser.add_argument("--load-cpu", type=int, default=1,
                        help="CPU for wrk, the mock upstream and this script")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md",
                        help="where to write the report (default benchmarks/RESULTS.md)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 run, 2 s, conc 1 and 64, 30 TTFB requests, 5k RSS")
    args = parser.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    if args.quick:
        return Options(1, 2, (1, 64), 30, 5_000, 1, args.target_cpu, args.load_cpu,
                       args.results, True, command)
    concurrencies = tuple(int(c) for c in args.concurrency.split(",") if c.strip())
    if 1 not in concurrencies:
        parser.error("--concurrency must include 1 (added latency is measured there)")
    if min(args.runs, args.duration, args.warmup, args.ttfb_requests, args.rss_requests) < 1:
        parser.error("--runs, --duration, --warmup, --ttfb-requests and --rss-requests must "
                     "be at least 1")
    return Options(args.runs, args.duration, concurrencies, args.ttfb_requests,
                   args.rss_requests, args.warmup, args.target_cpu, args.load_cpu,
                   args.results, False, command)


# ---- the request ---------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You are Orca Assist, the support assistant of Northwind Analytics, a company that "
    "sells a hosted dashboard product to small and mid-sized businesses. Answer in plain "
    "English and keep answers under 200 words unless the customer asks for detail. When a "
    "help-centre article covers the question, name it. Never invent order numbers, prices, "
    "delivery dates or features. If the customer mentions legal action, a data breach, a "
    "safety issue or wants to cancel, offer to hand over to a human agent. Format "
    "step-by-step instructions as a numbered list and put settings names in quotes."
)
TURNS = (
    ("user", "Hi, our weekly sales dashboard stopped refreshing on Monday. The tiles all "
     "show data from last Friday and the refresh button spins forever. Nothing changed on "
     "our side as far as I know."),
    ("assistant", "Sorry about that. A dashboard that stops refreshing is usually caused by "
     "an expired data-source credential. Could you open \"Settings\" > \"Data sources\" and "
     "tell me whether any source shows a yellow warning icon?"),
    ("user", "Yes, the Postgres warehouse connection has a warning that says the "
     "password was rejected. Our DBA rotated passwords over the weekend, so that fits."),
    ("assistant", "That explains it. Here is how to update it:\n1. Open \"Settings\" > "
     "\"Data sources\".\n2. Select the warehouse connection and choose \"Edit\".\n3. Enter "
     "the new password and press \"Test connection\".\n4. Save, then press \"Refresh all\" "
     "on the dashboard."),
    ("user", "Thanks, the connection test passes now and the tiles show today's numbers. "
     "Is there a way to be warned next time before the dashboards go stale, maybe an email "
     "to me and to the data team when a scheduled refresh fails twice in a row? We would "
     "rather hear it from the product than from the sales director on a Monday morning. "
     "(conversation ref aaaaaaaa)"),
)


def chat_body(stream: bool = False) -> bytes:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    messages += [{"role": role, "content": text} for role, text in TURNS]
    body: dict[str, object] = {"model": "gpt-4o-mini", "messages": messages,
                               "temperature": 0.2, "max_tokens": 400, "user": "bench-user-42"}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


# ---- processes -----------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 15) -> str:
        out = []
        for path in (self.stdout, self.stderr):
            text = path.read_text(errors="replace").strip().splitlines()
            out += text[-lines:]
        return "\n".join("    " + line for line in out) or "    (no output)"

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise BenchError(f"{self.name} (pid {self.pid}) exited with {code}:\n{self.tail()}")


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str  # http://host:port
    key: str  # bearer key; empty for direct and the floors
    proc: Proc

    @property
    def url(self) -> str:
        return self.base_url + CHAT_PATH


class Processes:
    """Starts pinned subprocesses and stops every one of them (SIGTERM, then wait)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Proc] = []
        self.exit_codes: dict[str, int] = {}

    def start(self, name: str, argv: list[str], cpu: int, env: dict[str, str] | None = None
              ) -> Proc:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", name)
        out, err = self.workdir / f"{slug}.out", self.workdir / f"{slug}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            popen = subprocess.Popen(["taskset", "-c", str(cpu), *argv], stdout=fo, stderr=fe,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        proc = Proc(name, popen, out, err)
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 20.0) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self.exit_codes[proc.name] = proc.popen.returncode

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            self.stop(proc)


def source_digest() -> str:
    """A short digest of relay/**/*.py, to tell which code a result belongs to."""
    digest = hashlib.sha256()
    for path in sorted(RELAY_SOURCE.rglob("*.py")):
        digest.update(path.relative_to(RELAY_SOURCE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(proc: Proc, what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        proc.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.name}: {what} not ready after {STARTUP_TIMEOUT:.0f} s:\n"
                             f"{proc.tail()}")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def http_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1.0) as resp:
        return bool(resp.status == 200)
    return False


def relay_key(proc: Proc) -> str:
    found: list[str] = []

    def ready() -> bool:
        found[:] = KEY_RE.findall(proc.stdout.read_text(errors="replace"))[:1]
        return bool(found)

    wait_until(proc, "the relay key on stdout", ready)
    return found[0]


def start_mock(procs: Processes, cpu: int) -> Target:
    port = free_port()
    argv = [orca_relay(), "mock-upstream", "--host", "127.0.0.1", "--port", str(port)]
    proc = procs.start(DIRECT, argv, cpu)
    wait_until(proc, f"port {port}", lambda: port_open(port))
    return Target(DIRECT, f"http://127.0.0.1:{port}", "", proc)


def start_floor(procs: Processes, name: str, upstream: str, uvloop: bool, cpu: int) -> Target:
    port = free_port()
    argv = [sys.executable, str(PASSTHROUGH), "--listen", f"127.0.0.1:{port}",
            "--upstream", upstream]
    proc = procs.start(name, argv + (["--uvloop"] if uvloop else []), cpu)
    wait_until(proc, f"port {port}", lambda: port_open(port))
    return Target(name, f"http://127.0.0.1:{port}", "", proc)


def start_relay(procs: Processes, name: str, upstream: str, uvloop: bool, cpu: int,
                prepare: Callable[[str, Proc], None] | None = None) -> tuple[Target, str]:
    """A relay on a fresh data dir; returns the target and its admin base URL.
    `prepare(data_dir, proc)` runs once the relay answers (e.g. to add controls)."""
    port, admin = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="orca-bench-data-", dir=procs.workdir)
    env = {"ORCA_UPSTREAM_URL": upstream, "ORCA_RELAY_LISTEN": f"127.0.0.1:{port}",
           "ORCA_ADMIN_LISTEN": f"127.0.0.1:{admin}", "ORCA_DATA_DIR": data_dir,
           "ORCA_UVLOOP": "1" if uvloop else "0", "ORCA_WORKERS": "1",
           "ORCA_LOG_LEVEL": "warning"}
    proc = procs.start(name, [orca_relay(), "serve"], cpu, env)
    key = relay_key(proc)
    for url in (f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{admin}/healthz"):
        wait_until(proc, url, functools.partial(http_ok, url))
    if name == RELAY_GR:
        add_guardrail(data_dir, proc)
    if name == RELAY_SOC2:
        soc2_live(proc, f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{port}{CHAT_PATH}", key)
    if prepare is not None:
        prepare(data_dir, proc)
    return Target(name, f"http://127.0.0.1:{port}", key, proc), f"http://127.0.0.1:{admin}"


def add_guardrail(data_dir: str, proc: Proc) -> None:
    """Give the relay's workspace a default guardrail with every detector on, and wait
    until the relay has loaded it (its state refresh runs every 0.5 s)."""
    workspace = re.search(r"workspace\s+(ws_[0-9a-f]+)", proc.stdout.read_text())
    if workspace is None:
        raise BenchError("cannot find the bootstrap workspace id in the relay's output")
    subprocess.run(
        [orca_relay(), "guardrail", "create", "--workspace", workspace.group(1), "--name",
         "every-detector", "--mode", "enforce", "--default", "--rules", EVERY_DETECTOR_RULES,
         "--data-dir", data_dir],
        check=True, capture_output=True, timeout=60)
    time.sleep(1.5)  # two refresh intervals: the relay reads guardrails on its own clock


def soc2_live(proc: Proc, admin_url: str, chat_url: str, key: str) -> None:
    """Install the SOC 2 pack and take it live with its guardrail as workspace default,
    as the bootstrap admin through the admin API; check that the relay enforces it."""
    out = proc.stdout.read_text()
    email = re.search(r"admin user\s+(\S+)", out)
    password = re.search(r"password\s+(\S+)", out)
    if email is None or password is None:
        raise BenchError("cannot find the bootstrap admin credentials in the relay's output")

    def post(path: str, body: dict[str, object], token: str = "") -> dict[str, object]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(admin_url + path, data=json.dumps(body).encode(),
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, object] = json.loads(response.read())
            return answer

    token = str(post("/api/auth/login", {"email": email.group(1),
                                          "password": password.group(1)})["token"])
    post("/api/compliance/packs/soc2/install", {}, token)
    post("/api/compliance/packs/soc2/golive", {"promote_default": True}, token)
    time.sleep(1.5)  # two refresh intervals: the relay reads controls on its own clock
    leak = {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "deploy with AKIAZ7Q3KXW2M4H5PLTB"}]}
    request = urllib.request.Request(chat_url, data=json.dumps(leak).encode(), headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code == 400 and b"guardrail_blocked" in exc.read():
            return
    raise BenchError("relay+soc2: a prompt carrying a cloud key was not blocked")


def orca_relay() -> str:
    beside = Path(sys.executable).with_name("orca-relay")
    found = str(beside) if beside.exists() else shutil.which("orca-relay")
    if not found:
        raise BenchError("orca-relay is not installed (pip install -e . in this venv)")
    return found


# ---- /proc readings ------------------------------------------------------------------


def cpu_seconds(stat_file: Path) -> float:
    """utime + stime from a /proc stat file."""
    stat = stat_file.read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds of the whole process (every thread) and of its main thread."""
    return (cpu_seconds(Path(f"/proc/{pid}/stat")),
            cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat")))


def process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds) of every process now running."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            table[int(entry)] = (int(fields[1]), cpu)
    return table


def foreign_cpu(before: dict[int, tuple[int, float]], after: dict[int, tuple[int, float]]
                ) -> float:
    """CPU seconds used between two snapshots by user processes that are not this
    benchmark or its children: other people's load on a shared machine. Processes that
    started and ended between the snapshots are missed, so this is a lower bound."""

    def ours(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            if pid == os.getpid():
                return True
            pid, seen = after.get(pid, before.get(pid, (0, 0.0)))[0], seen + 1
        return False

    return sum(cpu - before.get(pid, (0, 0.0))[1] for pid, (ppid, cpu) in after.items()
               if pid != 2 and ppid != 2 and not ours(pid))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmRSS in /proc/{pid}/status")


def relay_request_count(admin_url: str) -> int:
    with urllib.request.urlopen(admin_url + "/metrics", timeout=5.0) as resp:
        text = resp.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("orca_relay_requests_total")))


# ---- wrk -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_us: float  # CPU time of the target process (all threads) per request
    cpu_other_us: float  # ... of which threads other than the event loop's
    foreign_pct: float  # other processes' CPU over the run, in % of one CPU

    def row(self) -> str:
        flag = " ⚠" if self.foreign_pct >= NOISY_PCT else ""
        return (f"{self.rps:,.0f} | {self.p50_ms:.3f} | {self.p99_ms:.3f} | "
                f"{self.requests:,} | {self.cpu_us:.0f} | {self.cpu_other_us:.0f} | "
                f"{self.foreign_pct:.0f}{flag}")


# Each wrk run numbers its requests' conversation refs from its own block, so no run
# repeats a newest turn an earlier run sent (chat_post.lua).
_REF_BLOCKS = itertools.count(1)
REF_BLOCK = 10_000_000


def run_wrk(target: Target, conc: int, seconds: float, body_file: Path, cpu: int) -> WrkResult:
    first_ref = str(next(_REF_BLOCKS) * REF_BLOCK)
    argv = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s",
            "--latency", "-s", str(LUA_SCRIPT), target.url, "--", str(body_file), target.key,
            first_ref]
    total_before, main_before = cpu_split(target.proc.pid)
    procs_before, started = process_table(), time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    foreign = foreign_cpu(procs_before, process_table()) / (time.monotonic() - started)
    total_after, main_after = cpu_split(target.proc.pid)
    total = total_after - total_before
    other = max(0.0, total - (main_after - main_before))
    target.proc.check_alive()
    match = re.search(r"^BENCH_JSON (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise BenchError(f"wrk against {target.name} failed ({done.returncode}):\n"
                         f"{done.stdout}\n{done.stderr}")
    data = json.loads(match.group(1))
    errors = {k: v for k, v in data.items() if k.startswith("err_") and v}
    if errors:
        raise BenchError(f"{target.name} at concurrency {conc}: wrk counted errors {errors} "
                         f"(err_status = HTTP status >= 400)\n{target.proc.tail()}")
    requests = int(data["requests"])
    if requests == 0:
        raise BenchError(f"{target.name} at concurrency {conc}: no request completed")
    return WrkResult(rps=requests / (data["duration_us"] / 1e6), p50_ms=data["p50_us"] / 1000,
                     p99_ms=data["p99_us"] / 1000, requests=requests,
                     cpu_us=total / requests * 1e6, cpu_other_us=other / requests * 1e6,
                     foreign_pct=foreign * 100)


def check_target(target: Target) -> None:
    """One request by hand: a clear error now beats a wrk error table later."""
    headers = {"Content-Type": "application/json"}
    if target.key:
        headers["Authorization"] = "Bearer " + target.key
    request = urllib.request.Request(target.url, data=chat_body(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10.0) as resp:
            answer = json.loads(resp.read())
    except (urllib.error.URLError, ValueError) as exc:
        raise BenchError(f"{target.name}: a plain chat request failed: {exc}\n"
                         f"{target.proc.tail()}") from None
    if not answer.get("choices"):
        raise BenchError(f"{target.name}: answer without choices: {answer}")


# ---- throughput phase ----------------------------------------------------------------

Points = dict[tuple[str, int], list[WrkResult]]


def rotated(items: Sequence[Target], by: int) -> list[Target]:
    k = by % len(items)
    return [*items[k:], *items[:k]]


def throughput_phase(targets: Sequence[Target], opts: Options, body_file: Path,
                     concurrencies: Sequence[int]) -> Points:
    for target in targets:
        run_wrk(target, max(concurrencies), opts.warmup, body_file, opts.load_cpu)
    points: Points = {}
    for run in range(opts.runs):
        for conc in concurrencies:
            for target in rotated(targets, run):
                result = run_wrk(target, conc, opts.duration, body_file, opts.load_cpu)
                points.setdefault((target.name, conc), []).append(result)
                say(f"  run {run + 1}/{opts.runs} c={conc:<3} {target.name:<14} "
                    f"{result.rps:9,.0f} rps  p50 {result.p50_ms:7.3f} ms  "
                    f"p99 {result.p99_ms:7.3f} ms  cpu {result.cpu_us:5.0f} us/req"
                    f"  others {result.foreign_pct:3.0f}% cpu")
    return points


def repin(targets: Sequence[Target], cpu: int) -> None:
    for target in targets:
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(target.proc.pid)],
                       check=True, capture_output=True)


def one_core_phase(targets: Sequence[Target], opts: Options, body_file: Path) -> Points:
    """TARGETS.md's layout: every process on one CPU (the load CPU)."""
    movable = [t for t in targets if t.name != DIRECT]
    repin(movable, opts.load_cpu)
    try:
        return throughput_phase(targets, opts, body_file, ONE_CORE_CONCURRENCIES)
    finally:
        repin(movable, opts.target_cpu)


def reported_overhead(target: Target, requests: int) -> float:
    """Median of the relay's own x-orca-overhead-ms over sequential plain requests."""
    host, _, port = target.base_url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10.0)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {target.key}"}
    values = []
    try:
        for _ in range(requests):
            conn.request("POST", CHAT_PATH, chat_body(), headers)
            response = conn.getresponse()
            response.read()
            values.append(float(response.getheader("x-orca-overhead-ms") or "nan"))
    finally:
        conn.close()
    return float(statistics.median(values))


# ---- streaming first byte ------------------------------------------------------------


class RawClient:
    """One keep-alive HTTP/1.1 connection; times the first body byte of a response."""

    def __init__(self, target: Target, body: bytes) -> None:
        host_port = target.base_url.removeprefix("http://")
        self.host, _, port = host_port.partition(":")
        self.port = int(port)
        head = [f"POST {CHAT_PATH} HTTP/1.1", f"Host: {host_port}",
                "Content-Type: application/json", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in STREAM_HEADERS.items()]
        if target.key:
            head.append(f"Authorization: Bearer {target.key}")
        self.request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        self.name = target.name
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    async def first_byte(self) -> float:
        """Seconds from writing the request to reading the first byte of the body."""
        assert self.reader is not None and self.writer is not None
        sent = time.perf_counter()
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200" or b"chunked" not in head.lower():
            raise BenchError(f"{self.name}: stream answered {head.decode(errors='replace')}")
        size = int((await self.reader.readline()).split(b";")[0], 16)
        first = await self.reader.readexactly(1)
        elapsed = time.perf_counter() - sent
        body = first + await self._rest(size - 1)
        if b"data: [DONE]" not in body:
            raise BenchError(f"{self.name}: stream ended without [DONE]: {body[-200:]!r}")
        return elapsed

    async def _rest(self, remaining: int) -> bytes:
        assert self.reader is not None
        parts = [await self.reader.readexactly(remaining + 2)]
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size + 2))
        await self.reader.readline()  # the CRLF after the last chunk
        return b"".join(parts)


async def ttfb_run(targets: Sequence[Target], requests: int) -> dict[str, list[float]]:
    clients = [RawClient(t, chat_body(stream=True)) for t in targets]
    times: dict[str, list[float]] = {t.name: [] for t in targets}
    try:
        for client in clients:
            await client.connect()
            await client.first_byte()  # warm the connection and the path
        for _ in range(requests):
            for client in clients:
                times[client.name].append(await client.first_byte())
    finally:
        for client in clients:
            await client.close()
    return times


def ttfb_phase(targets: Sequence[Target], opts: Options) -> dict[str, list[float]]:
    """Per target, the median first-byte time (ms) of each run."""
    medians: dict[str, list[float]] = {t.name: [] for t in targets}
    for run in range(opts.runs):
        times = asyncio.run(ttfb_run(rotated(targets, run), opts.ttfb_requests))
        for name, values in times.items():
            medians[name].append(statistics.median(values) * 1000)
        say(f"  run {run + 1}/{opts.runs} " + "  ".join(
            f"{t.name} {medians[t.name][-1]:.3f} ms" for t in targets))
    return medians


# ---- memory --------------------------------------------------------------------------


@dataclass
class RssResult:
    start_mb: float
    samples: list[tuple[int, float]] = field(default_factory=list)  # (requests, MB)
    at_n: tuple[int, float] = (0, 0.0)
    at_2n: tuple[int, float] = (0, 0.0)
    exit_code: int | None = None


def drive_until(target: Target, admin: str, count: int, opts: Options, body_file: Path,
                result: RssResult) -> tuple[int, float]:
    """Run wrk in bounded slices until the relay has answered `count` requests."""
    done = relay_request_count(admin)
    rate = 5000.0  # a high first guess: the first slice is short, later ones use the real rate
    while done < count:
        seconds = min(10.0, max(1.0, (count - done) / rate))
        wrk = run_wrk(target, RSS_CONCURRENCY, seconds, body_file, opts.load_cpu)
        rate = max(100.0, wrk.rps)
        done = relay_request_count(admin)
        result.samples.append((done, rss_mb(target.proc.pid)))
    return done, rss_mb(target.proc.pid)


def rss_phase(procs: Processes, upstream: str, opts: Options, body_file: Path) -> RssResult:
    target, admin = start_relay(procs, "relay (RSS)", upstream, True, opts.target_cpu)
    check_target(target)
    result = RssResult(start_mb=rss_mb(target.proc.pid))
    try:
        result.at_n = drive_until(target, admin, opts.rss_requests, opts, body_file, result)
        say(f"  after {result.at_n[0]:,} requests: {result.at_n[1]:.1f} MB")
        result.at_2n = drive_until(target, admin, 2 * opts.rss_requests, opts, body_file,
                                   result)
        say(f"  after {result.at_2n[0]:,} requests: {result.at_2n[1]:.1f} MB")
    finally:
        procs.stop(target.proc)
        result.exit_code = procs.exit_codes.get(target.proc.name)
    return result


# ---- summary -------------------------------------------------------------------------


@dataclass
class Report:
    opts: Options
    started: dt.datetime
    body_bytes: int
    points: Points
    ttfb: dict[str, list[float]]
    rss: RssResult
    one_core: Points
    overhead_header: dict[str, float]
    source: tuple[str, str] = ("", "")  # relay/ digest at start and at end
    elapsed: float = 0.0
    exit_codes: dict[str, int] = field(default_factory=dict)

    def med(self, name: str, conc: int, attr: str, one_core: bool = False) -> float:
        points = self.one_core if one_core else self.points
        return float(statistics.median(getattr(r, attr) for r in points[(name, conc)]))

    def ratio(self, relay: str, floor: str, conc: int, one_core: bool = False) -> float:
        return self.med(relay, conc, "rps", one_core) / self.med(floor, conc, "rps", one_core)

    def run_ratios(self, relay: str, floor: str, conc: int, one_core: bool) -> list[float]:
        """Relay/floor RPS paired run by run (measured seconds apart, so less noisy)."""
        points = self.one_core if one_core else self.points
        return [a.rps / b.rps for a, b in zip(points[(relay, conc)], points[(floor, conc)],
                                              strict=True)]

    def noisy(self) -> tuple[int, int]:
        results = [x for points in (self.points, self.one_core) for xs in points.values()
                   for x in xs]
        return sum(x.foreign_pct >= NOISY_PCT for x in results), len(results)

    def added_p50(self, name: str, one_core: bool = False) -> float:
        return self.med(name, 1, "p50_ms", one_core) - self.med(DIRECT, 1, "p50_ms", one_core)

    def ttfb_med(self, name: str) -> float:
        return statistics.median(self.ttfb[name])


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def machine_facts() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return [f"- nproc: {os.cpu_count()}; CPU: {cpu}; kernel {platform.release()}",
            f"- Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
            f"uvloop {uvloop_version()}, {wrk.split(' Copyright')[0]}",
            f"- load average at start: {Path('/proc/loadavg').read_text().split()[:3]}"]


def uvloop_version() -> str:
    try:
        import uvloop
    except ImportError:
        return "not installed"
    return str(getattr(uvloop, "__version__", "?"))


def method_section(r: Report) -> list[str]:
    o = r.opts
    return [
        "## Method", "",
        f"- {len(ALL_TARGETS)} targets share one mock upstream (`orca-relay mock-upstream`, "
        "no model delay): " + ", ".join(f"`{t}`" for t in ALL_TARGETS) + ". `floor` is "
        "`benchmarks/passthrough.py`; the relay runs as shipped (one worker, no controls "
        "configured, metering on, fresh SQLite data dir).",
        f"- Request: POST /v1/chat/completions, {r.body_bytes} bytes of JSON (system prompt "
        "and five turns), `Authorization: Bearer <relay key>` on every target; the last turn "
        "carries a conversation ref unique to each request (chat_post.lua), as a real chat's "
        "newest turn is new while its history repeats.",
        f"- wrk closed loop, `-t1 -cN --latency`, {o.duration:g} s per point, concurrency "
        f"{', '.join(map(str, o.concurrencies))}; {o.runs} run(s), each visiting every "
        "concurrency and target, target order rotated per run; medians of runs quoted. "
        f"{o.warmup:g} s warm-up per target first.",
        f"- CPU layout (main tables): relay and floor processes on CPU {o.target_cpu}; mock "
        f"upstream, wrk and this script on CPU {o.load_cpu} (taskset). TARGETS.md's "
        "reference figures pinned everything to one core; here the proxy gets a core of its "
        "own and the load side the other, so absolute RPS and latency are not comparable "
        "with that table: every hop is a cross-CPU wake-up, which on this VM costs more at "
        "concurrency 1 than it does on one core. The ratios, measured side by side in this "
        "run, are the comparison. A second, shorter section repeats concurrency "
        f"{' and '.join(map(str, ONE_CORE_CONCURRENCIES))} with every process on CPU "
        f"{o.load_cpu}, TARGETS.md's layout.",
        "- CPU µs/req: utime+stime of the target process over the wrk run, divided by the "
        "requests wrk completed; in brackets the part spent in threads other than the "
        "event loop's (the relay's SQLite writer and reader).",
        f"- Streaming: {o.ttfb_requests} streamed requests per target per run over one "
        "keep-alive raw socket each, targets round-robin request by request; time from "
        "writing the request to reading the first body byte; mock sends 20 chunks 2 ms "
        "apart (`x-mock-chunks: 20`, `x-mock-chunk-delay-ms: 2`).",
        f"- Memory: a fresh relay+uvloop, concurrency {RSS_CONCURRENCY}, non-streamed, until "
        f"its `orca_relay_requests_total` passes {o.rss_requests:,} and "
        f"{2 * o.rss_requests:,}; VmRSS from /proc (MB = 10^6 bytes). Flat means the "
        f"second reading is at most {FLAT_MB:g} MB above the first.", "",
    ]


def cpu_cell(r: Report, name: str, conc: int, one_core: bool) -> str:
    total = r.med(name, conc, "cpu_us", one_core)
    other = r.med(name, conc, "cpu_other_us", one_core)
    # CPU time ticks are 10 ms: below ~5 µs/req the split is rounding noise.
    return f"{total:.0f} ({other:.0f})" if other >= 5 else f"{total:.0f}"


def throughput_table(r: Report, one_core: bool = False) -> list[str]:
    concs = ONE_CORE_CONCURRENCIES if one_core else r.opts.concurrencies
    lines = ["| target | " + " | ".join(f"RPS c={c} | p50 ms | p99 ms | CPU µs/req"
                                        for c in concs) + " |",
             "|---|" + "---:|" * (4 * len(concs))]
    for name in ALL_TARGETS:
        cells = []
        for c in concs:
            cells += [f"{r.med(name, c, 'rps', one_core):,.0f}",
                      f"{r.med(name, c, 'p50_ms', one_core):.3f}",
                      f"{r.med(name, c, 'p99_ms', one_core):.3f}",
                      cpu_cell(r, name, c, one_core)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def ratio_table(r: Report, one_core: bool = False) -> list[str]:
    concs = ONE_CORE_CONCURRENCIES if one_core else r.opts.concurrencies
    lines = ["Relay / floor throughput; ratio of medians, in brackets the range of "
             "run-by-run ratios:", "",
             "| pair | reading | " + " | ".join(f"c={c}" for c in concs) + " | verdict |",
             "|---|---|" + "---:|" * len(concs) + "---|"]
    for relay, floor, reading, target, judged_at in RATIO_PAIRS:
        ratios = [r.ratio(relay, floor, c, one_core) for c in concs]
        spans = [r.run_ratios(relay, floor, c, one_core) for c in concs]
        judged = [x for c, x in zip(concs, ratios, strict=True)
                  if judged_at is None or c in judged_at]
        scope = ("" if len(judged) == len(ratios) else
                 " at c=" + ", ".join(str(c) for c in concs if c in (judged_at or ())))
        lines.append(f"| {relay} / {floor} | {reading} (target ≥ {target:g}{scope}) | "
                     + " | ".join(f"{x:.2f} ({min(s):.2f}-{max(s):.2f})"
                                  for x, s in zip(ratios, spans, strict=True))
                     + f" | {verdict(min(judged) >= target)} |")
    return [*lines, ""]


def latency_table(r: Report, one_core: bool = False) -> list[str]:
    direct = r.med(DIRECT, 1, "p50_ms", one_core)
    lines = [f"Added p50 over direct at concurrency 1 (direct p50 {direct:.3f} ms):", "",
             "| target | p50 ms | added ms | target ms | verdict |", "|---|---:|---:|---:|---|"]
    for name in PROXIES:
        added = r.added_p50(name, one_core)
        limit = ADDED_P50_TARGETS.get(name)
        mark = "reference" if limit is None else verdict(added <= limit)
        lines.append(f"| {name} | {r.med(name, 1, 'p50_ms', one_core):.3f} | {added:+.3f} | "
                     f"{'—' if limit is None else f'≤ {limit:g}'} | {mark} |")
    return [*lines, ""]


def split_layout(r: Report) -> list[str]:
    return ["## Throughput and latency: proxy on its own CPU (medians)", "",
            *throughput_table(r), *ratio_table(r), *latency_table(r), *overhead_lines(r)]


def one_core_layout(r: Report) -> list[str]:
    return [f"## Throughput and latency: everything on CPU {r.opts.load_cpu} "
            "(TARGETS.md's layout; medians)", "",
            "TARGETS.md measured the field here: floor 2,054 RPS at c=1, +0.37 ms p50, "
            "2,915 RPS at c=64, 295 µs/req; with uvloop 2,231 / +0.34 ms / 2,861 / 262 µs "
            "(its request was ~1.6 KB, this one is ~2 KB).", "",
            *throughput_table(r, True), *ratio_table(r, True), *latency_table(r, True)]


def overhead_lines(r: Report) -> list[str]:
    cells = [f"{name} reports {value:.3f} ms (measured added p50: "
             f"{r.added_p50(name):+.3f} ms)" for name, value in r.overhead_header.items()]
    return [f"The relay's own `x-orca-overhead-ms` header, median over {r.opts.ttfb_requests} "
            "sequential plain requests: " + "; ".join(cells) + ".", ""]


def ttfb_table(r: Report) -> list[str]:
    lines = [f"## Streaming: time to first byte at concurrency 1 (target: relay ≤ floor + "
             f"{TARGET_TTFB_DELTA_MS} ms)", "",
             "| target | TTFB ms (median of runs) | vs direct | vs floor | vs floor+uvloop |",
             "|---|---:|---:|---:|---:|"]
    for name in ALL_TARGETS:
        t = r.ttfb_med(name)
        lines.append(f"| {name} | {t:.3f} | {t - r.ttfb_med(DIRECT):+.3f} | "
                     f"{t - r.ttfb_med(FLOOR):+.3f} | {t - r.ttfb_med(FLOOR_UV):+.3f} |")
    lines.append("")
    for relay, floor, reading, _, _ in RATIO_PAIRS:
        delta = r.ttfb_med(relay) - r.ttfb_med(floor)
        lines.append(f"- {relay} minus {floor} ({reading}): {delta:+.3f} ms "
                     f"{verdict(delta <= TARGET_TTFB_DELTA_MS)}")
    return [*lines, ""]


def rss_lines(r: Report) -> list[str]:
    s = r.rss
    growth = s.at_2n[1] - s.at_n[1]
    per_req = growth * 1e6 / max(1, s.at_2n[0] - s.at_n[0])
    ok = s.at_n[1] <= TARGET_RSS_MB and s.at_2n[1] <= TARGET_RSS_MB and growth <= FLAT_MB
    trail = ", ".join(f"{n:,}: {mb:.1f}" for n, mb in s.samples)
    return ["## Memory (relay+uvloop, fresh process)", "",
            "| point | requests | VmRSS MB |", "|---|---:|---:|",
            f"| after start-up | 0 | {s.start_mb:.1f} |",
            f"| after N | {s.at_n[0]:,} | {s.at_n[1]:.1f} |",
            f"| after 2N | {s.at_2n[0]:,} | {s.at_2n[1]:.1f} |", "",
            f"Growth over the second N: {growth:+.2f} MB ({per_req:+.1f} bytes/request). "
            f"Target ≤ {TARGET_RSS_MB:g} MB and flat: {verdict(ok)}. "
            f"Relay exit code on SIGTERM: {s.exit_code}.", "",
            f"Every sample (requests: MB): {trail}", ""]


def loadgen_lines(r: Report) -> list[str]:
    lines = ["## Is the load side the bottleneck?", "",
             "| concurrency | direct RPS | relay+uvloop RPS | direct / relay | relay's CPU busy "
             "| floor's CPU busy | verdict |", "|---:|---:|---:|---:|---:|---:|---|"]
    for c in r.opts.concurrencies:
        d, x = r.med(DIRECT, c, "rps"), r.med(RELAY_UV, c, "rps")
        busy = [r.med(n, c, "cpu_us") * r.med(n, c, "rps") / 1e4 for n in (RELAY_UV, FLOOR)]
        lines.append(f"| {c} | {d:,.0f} | {x:,.0f} | {d / x:.1f} x | {busy[0]:.0f} % | "
                     f"{busy[1]:.0f} % | "
                     f"{'not the bottleneck' if d / x >= LOADGEN_HEADROOM else '**suspect**'} |")
    lines += ["", "wrk and the mock upstream share one CPU in every measurement of the split "
              "layout; in the direct row that CPU does nothing else, so direct RPS is what "
              "the load side can deliver. A ratio of at least "
              f"{LOADGEN_HEADROOM:g} means the relay's and floor's figures are limited by the "
              "proxy's own CPU, not by wrk or the mock; CPU busy (CPU µs/req times RPS) near "
              "100 % confirms the proxy's core is the one that is full. At concurrency 1 "
              "nothing is full: the closed loop waits on one request at a time, so RPS there "
              "is 1 / latency.", ""]
    return lines


def raw_points(title: str, points: Points) -> list[str]:
    lines = [title, "", "| target | c | run | RPS | p50 ms | p99 ms | requests | CPU µs/req "
             "| of which other threads | other processes' CPU % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (name, conc), results in sorted(points.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines += [f"| {name} | {conc} | {i} | {x.row()} |" for i, x in enumerate(results, 1)]
    return [*lines, ""]


def raw_lines(r: Report) -> list[str]:
    lines = ["## Raw figures, every run", "",
             *raw_points("Proxy on its own CPU:", r.points),
             *raw_points("Everything on one CPU:", r.one_core),
             "Streaming first byte:", "", "| target | TTFB ms per run |", "|---|---|"]
    lines += [f"| {n} | {', '.join(f'{v:.3f}' for v in vs)} |" for n, vs in r.ttfb.items()]
    return [*lines, ""]


def source_line(r: Report) -> str:
    start, end = r.source
    if start == end:
        return f"`{start}`, unchanged during the run"
    return (f"`{start}` at start, `{end}` at the end: **the relay code changed during the "
            "run**; processes started later (the RSS relay) ran the newer code")


def render(r: Report) -> str:
    when = r.started.strftime("%Y-%m-%d %H:%M UTC")
    head = ["# Relay benchmark results", "",
            "Written by `benchmarks/bench_relay.py`; do not edit by hand.", "",
            f"- date: {when}; wall time {r.elapsed / 60:.1f} min"
            + (" (**--quick smoke run: not a measurement**)" if r.opts.quick else ""),
            *machine_facts(), f"- command: `{r.opts.command}`",
            f"- relay source (sha256 of relay/**/*.py): {source_line(r)}",
            f"- exit codes after SIGTERM: {r.exit_codes} (the mock upstream has no SIGTERM "
            "handler, so -15 is expected there)",
            "- noise: {} of {} wrk points ran while other processes used ≥ {:g} % of a CPU "
            "(flagged ⚠ in the raw tables).".format(*r.noisy(), NOISY_PCT), ""]
    sections = (method_section, split_layout, ttfb_table, rss_lines, loadgen_lines,
                one_core_layout, raw_lines)
    return "\n".join(head + [line for section in sections for line in section(r)])


def summary(r: Report) -> str:
    out = ["", "== summary =="]
    for one_core, concs in ((False, r.opts.concurrencies), (True, ONE_CORE_CONCURRENCIES)):
        layout = "one CPU" if one_core else "split"
        for relay, floor, _, _, _ in RATIO_PAIRS:
            out.append(f"[{layout}] {relay}/{floor} RPS: " + "  ".join(
                f"c={c} {r.ratio(relay, floor, c, one_core):.2f}" for c in concs))
        out.append(f"[{layout}] added p50 over direct, c=1: " + "  ".join(
            f"{n} {r.added_p50(n, one_core):+.3f} ms"
            for n in PROXIES))
    out.append("TTFB ms: " + "  ".join(f"{n} {r.ttfb_med(n):.3f}" for n in ALL_TARGETS)
               + f"  (relay+uvloop - floor {r.ttfb_med(RELAY_UV) - r.ttfb_med(FLOOR):+.3f})")
    out.append(f"RSS MB: start {r.rss.start_mb:.1f}, after {r.rss.at_n[0]:,} "
               f"{r.rss.at_n[1]:.1f}, after {r.rss.at_2n[0]:,} {r.rss.at_2n[1]:.1f}")
    out.append("noisy points (other processes >= {:g}% CPU): {} of {}".format(
        NOISY_PCT, *r.noisy()))
    out.append("direct/relay+uvloop RPS: " + "  ".join(
        f"c={c} {r.med(DIRECT, c, 'rps') / r.med(RELAY_UV, c, 'rps'):.1f}x"
        for c in r.opts.concurrencies))
    return "\n".join(out)


# ---- main ----------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def preflight(opts: Options) -> None:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    if shutil.which("taskset") is None:
        raise BenchError("taskset is not installed (util-linux)")
    cpus = os.sched_getaffinity(0)
    if not {opts.target_cpu, opts.load_cpu} <= cpus or opts.target_cpu == opts.load_cpu:
        raise BenchError(f"--target-cpu {opts.target_cpu} and --load-cpu {opts.load_cpu} "
                         f"must be two different CPUs of {sorted(cpus)}")
    os.sched_setaffinity(0, {opts.load_cpu})


def start_targets(procs: Processes, opts: Options) -> list[Target]:
    mock = start_mock(procs, opts.load_cpu)
    upstream = mock.base_url + "/v1"
    cpu = opts.target_cpu
    targets = [mock,
               start_floor(procs, FLOOR, upstream, False, cpu),
               start_floor(procs, FLOOR_UV, upstream, True, cpu),
               start_relay(procs, RELAY_UV, upstream, True, cpu)[0],
               start_relay(procs, RELAY_AIO, upstream, False, cpu)[0],
               start_relay(procs, RELAY_GR, upstream, True, cpu)[0],
               start_relay(procs, RELAY_SOC2, upstream, True, cpu)[0]]
    for target in targets:
        check_target(target)
    return targets


def run(opts: Options, workdir: Path) -> Report:
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    source_at_start = source_digest()
    body_file = workdir / "chat.json"
    body_file.write_bytes(chat_body())
    procs = Processes(workdir)
    try:
        targets = start_targets(procs, opts)
        say(f"targets up: {', '.join(f'{t.name} pid {t.proc.pid}' for t in targets)}")
        say(f"throughput and latency (targets on CPU {opts.target_cpu}, load on "
            f"CPU {opts.load_cpu}):")
        points = throughput_phase(targets, opts, body_file, opts.concurrencies)
        say("streaming first byte (ms, median per run):")
        ttfb = ttfb_phase(targets, opts)
        overhead = {t.name: reported_overhead(t, opts.ttfb_requests)
                    for t in targets if t.key}
        say(f"relay-reported x-orca-overhead-ms, c=1 medians: {overhead}")
        say(f"throughput and latency, everything on CPU {opts.load_cpu} (TARGETS.md layout):")
        one_core = one_core_phase(targets, opts, body_file)
        say("memory:")
        rss = rss_phase(procs, targets[0].base_url + "/v1", opts, body_file)
    finally:
        procs.stop_all()
    report = Report(opts, started, len(chat_body()), points, ttfb, rss, one_core, overhead)
    report.exit_codes = procs.exit_codes
    report.source = (source_at_start, source_digest())
    if report.source[0] != report.source[1]:
        say("warning: relay/ changed while the benchmark ran; see RESULTS.md")
    report.elapsed = time.monotonic() - t0
    return report


KEPT = re.compile(r"<!-- (\w[\w-]*) -->.*?<!-- /\1 -->\n", re.S)


def kept_sections(results: Path) -> str:
    """Sections other benchmarks own in RESULTS.md (between <!-- name --> markers)."""
    old = results.read_text() if results.exists() else ""
    return "".join("\n" + m.group(0) for m in KEPT.finditer(old))


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        preflight(opts)
        with tempfile.TemporaryDirectory(prefix="orca-bench-") as tmp:
            report = run(opts, Path(tmp))
    except BenchError as exc:
        sys.stderr.write(f"bench_relay: {exc}\n")
        return 1
    opts.results.write_text(render(report) + kept_sections(opts.results))
    say(summary(report))
    say(f"wrote {opts.results} ({report.elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
