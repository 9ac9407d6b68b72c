#!/usr/bin/env python3
"""Benchmark the guardrail scanner on the shared labeled corpus, in one run.

Measures, on one core (the process pins itself to the last allowed CPU):

(a) a bare pyahocorasick pass over the detector set's lowercased anchors (the ceiling),
(b) the full ``relay.guardrail.scan.scan()`` over the default detector set,
(c) the naive single-``re`` alternation baseline (``adapters/naive_re.py``),
(e) an oracle bound: the ceiling's pass, plus the one C pass that finds digit runs (values
    with no literal anchor: cards, SSNs, phones, IPs), plus, per value the scanner reports
    (looked up from a list made before timing), one anchored ``regex`` match, its
    detector's validator (Luhn, mod-97, ...) and one ``Finding``. It does no search for
    values, no normalisation and no rejection of look-alikes, so no scanner built as
    "anchor pass, then confirm each value in Python" can be faster: its ratio to the
    ceiling is the best such a design can reach.

each as the median of ``--repeat`` timed passes (one call per document, MB/s of UTF-8
text), and (d) accuracy P / R / F1 per category and per type, scored with the shared
``eval.py`` (imported from the corpus folder, not copied). Writes a Markdown report
(default ``benchmarks/SCAN_RESULTS.md``) and prints a summary.

The corpus is built with the shared generator (``make_corpus.py``), which needs
``faker``; install it into the venv for the benchmark only:
``.venv/bin/pip install faker==40.54.0``.

Example::

    .venv/bin/python benchmarks/bench_scan.py
    .venv/bin/python benchmarks/bench_scan.py --repeat 5 --out /tmp/results.md
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from relay.guardrail.detectors import DetectorSet, default_detector_set
from relay.guardrail.scan import Finding
from relay.guardrail.scan import scan as relay_scan

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS_DIR = Path("/work/shared/corpus")
DEFAULT_CORPUS = Path("/tmp/orca_scan/corpus.jsonl")
DEFAULT_OUT = ROOT / "benchmarks" / "SCAN_RESULTS.md"

Span = tuple[int, int, str]
ScanFn = Callable[[str], Any]

# Detector id -> corpus type (make_corpus.TYPES); anything else reports as "<category>/<id>".
TYPE_OF: dict[str, str] = {
    "email_address": "email",
    "iban": "iban",
    "ipv4_address": "ipv4",
    "ipv6_address": "ipv6",
    "mac_address": "mac_address",
    "payment_card_number": "credit_card",
    "phone_international": "phone",
    "phone_nanp": "phone",
    "phone_uk": "phone",
    "phone_national": "phone",
    "us_ssn": "us_ssn",
    "us_ssn_labelled": "us_ssn",
    "us_ssn_column": "us_ssn",
    "us_passport": "us_passport",
    "us_itin": "us_itin",
    "aba_routing": "aba_routing",
    "uk_nhs": "uk_nhs",
    "us_driver_license": "us_driver_license",
    "date_of_birth": "date_of_birth",
    "openai_api_key": "openai_key",
    "anthropic_api_key": "anthropic_key",
    "huggingface_token": "huggingface_token",
    "slack_token": "slack_token",
    "slack_webhook_url": "slack_webhook",
    "aws_access_key_id": "aws_access_key_id",
    "aws_secret_access_key": "aws_secret_access_key",
    "gcp_api_key": "google_api_key",
    "private_key_pem": "private_key",
    "gcp_service_account_key": "private_key",
    "json_web_token": "jwt",
    "stripe_live_key": "stripe_key",
    "npm_access_token": "npm_token",
    "connection_url_password": "db_url_credentials",
    "github_token": "github_token",
    "github_fine_grained_token": "github_token",
    "gitlab_token": "gitlab_token",
    "sendgrid_api_key": "sendgrid_key",
    "twilio_api_key": "twilio_key",
    "generic_secret_assignment": "generic_secret",
}

# Targets from /work/shared/TARGETS.md ("Scanner" section).
SPEED_RATIO_TARGET = 0.6
ORACLE = "oracle bound (knows each value's place)"
CEILING = "pyahocorasick anchors (ceiling)"
SECRET_TARGET = 0.99
PII_TARGET = 0.97
OBFUSCATED_TARGET = 0.95
STRUCTURED_PII = (
    "email", "phone", "us_ssn", "credit_card", "iban", "ipv4", "ipv6", "mac_address",
    "us_passport", "aba_routing", "uk_nhs",
)  # fmt: skip


def _detector_set() -> DetectorSet:
    return default_detector_set()


def relay_adapter(text: str) -> list[Span]:
    """eval.py adapter for our scanner: (start, end, corpus type) per finding."""
    out: list[Span] = []
    for f in relay_scan(text, _detector_set()):
        out.append((f.start, f.end, TYPE_OF.get(f.detector, f"{f.category}/{f.detector}")))
    return out


def load_module(path: Path, name: str) -> Any:
    """Import a module from a file path (used for the shared eval.py and adapters)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def ensure_corpus(corpus_dir: Path, corpus: Path) -> None:
    """Build the corpus with the shared generator unless it already exists."""
    if corpus.exists():
        return
    try:
        importlib.import_module("faker")
    except ImportError:
        raise SystemExit(
            "faker is missing: the shared corpus generator needs it. Install it for the "
            "benchmark only: .venv/bin/pip install faker==40.54.0 (or pass --corpus)"
        ) from None
    corpus.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(corpus_dir / "make_corpus.py"), "--out", str(corpus)]
    subprocess.run(cmd, check=True)


def pin_one_cpu() -> str:
    try:
        cpu = sorted(os.sched_getaffinity(0))[-1]
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return "not pinned"
    return f"pinned to cpu {cpu}"


def ceiling_scanner(detectors: DetectorSet) -> ScanFn:
    """A bare pyahocorasick pass over the set's lowercased anchors, hits drained in C."""
    import ahocorasick

    automaton: Any = ahocorasick.Automaton()
    for det in detectors.detectors:
        for anchor in det.anchors:
            automaton.add_word(anchor.lower(), len(anchor))
    automaton.make_automaton()

    def run(text: str) -> list[Any]:
        return list(automaton.iter(text.lower()))

    return run


def _accept(value: str) -> bool:
    return True


def oracle_bound_scanner(detectors: DetectorSet, texts: Sequence[str]) -> ScanFn:
    """The ceiling plus the least work any confirm step must do (see the module docstring)."""
    ceiling = ceiling_scanner(detectors)
    # The digit-run pass: the shape-view prefilter the most detectors share.
    digit_runs = max((p for p in detectors.prefilters if p[0]), key=lambda p: len(p[3]))[2]
    by_id = {det.id: det for det in detectors.detectors}
    known: dict[int, list[tuple[Any, Any, str, str, int, int]]] = {}
    for text in texts:
        known[id(text)] = [
            (by_id[f.detector].pattern.match, by_id[f.detector].validator or _accept,
             f.detector, f.category, f.start, f.end)
            for f in relay_scan(text, detectors)
        ]  # fmt: skip

    def run(text: str) -> list[Finding]:
        ceiling(text)
        shape = detectors.views(text)[1]
        [m.span() for m in digit_runs.finditer(shape)]
        found: list[Finding] = []
        for match, validate, ident, category, start, end in known[id(text)]:
            match(text, start)
            validate(text[start:end])
            found.append(Finding(ident, category, start, end))
        return found

    return run


def time_scanners(
    fns: dict[str, ScanFn], texts: Sequence[str], repeat: int, warmup: int
) -> dict[str, list[float]]:
    """MB/s of each scanner's ``repeat`` timed passes (one call per document).

    Rounds interleave the scanners (one pass of each per round), so load from elsewhere on
    this shared machine lands on all of them alike and their ratios stay fair.
    """
    nbytes = sum(len(t.encode()) for t in texts)
    for fn in fns.values():
        for t in texts[:warmup]:
            fn(t)
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            t0 = time.perf_counter()
            for t in texts:
                fn(t)
            rates[name].append(nbytes / 1e6 / (time.perf_counter() - t0))
    return rates


def round_ratio(speed: dict[str, list[float]], name: str) -> float:
    """Median over rounds of ``name``'s speed over the ceiling's in the same round: rounds
    are interleaved, so a round slowed by other load slows both sides of its ratio."""
    ceiling = speed[CEILING]
    return statistics.median(a / b for a, b in zip(speed[name], ceiling, strict=True))


def obfuscated_recall(docs: Sequence[dict[str, Any]], preds: Sequence[list[Span]]) -> float:
    """Recall (same category, span overlap) over non-NER gold in ``obfuscated`` documents."""
    gold = hit = 0
    for doc, ps in zip(docs, preds, strict=True):
        if doc["kind"] != "obfuscated":
            continue
        for g in doc["spans"]:
            if g.get("ner"):
                continue
            gold += 1
            hit += any(
                p[0] < g["end"] and g["start"] < max(p[1], p[0] + 1)
                and (TYPE_OF_CATEGORY.get(p[2]) or p[2].split("/")[0]) == g["category"]
                for p in ps
            )  # fmt: skip
    return hit / gold if gold else 1.0


TYPE_OF_CATEGORY: dict[str, str] = {}


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def accuracy_tables(summary: dict[str, Any]) -> list[str]:
    lines = [
        "| category | gold | found | pred | correct | P | R | F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, c in summary["categories"].items():
        if key == "pii_ner":
            continue
        lines.append(
            f"| {c['label']} | {c['gold']} | {c['found']} | {c['pred']} | {c['correct']} | "
            f"{fmt(c['P'])} | {fmt(c['R'])} | {fmt(c['F1'])} |"
        )
    lines += ["", "| type | cat | gold | pred | P | R | F1 | P strict | R strict |"]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for t, v in summary["types"].items():
        if v["ner"]:
            continue
        lines.append(
            f"| {t} | {v['category']} | {v['gold']} | {v['pred']} | {fmt(v['P'])} | {fmt(v['R'])} "
            f"| {fmt(v['F1'])} | {fmt(v['P_strict'])} | {fmt(v['R_strict'])} |"
        )
    return lines


def target_rows(
    ratio: float, relay_mbps: float, summary: dict[str, Any], obf: float
) -> list[tuple[str, str, bool]]:
    sec_p = summary["categories"]["secret"]["P"] or 0.0
    sec_r = summary["categories"]["secret"]["R"] or 0.0
    rows = [
        (f"throughput >= {SPEED_RATIO_TARGET} x ceiling", f"{ratio:.2f} x ({relay_mbps:.1f} MB/s)",
         ratio >= SPEED_RATIO_TARGET),
        (f"secret P >= {SECRET_TARGET}", fmt(sec_p), sec_p >= SECRET_TARGET),
        (f"secret R >= {SECRET_TARGET}", fmt(sec_r), sec_r >= SECRET_TARGET),
        (f"obfuscated recall >= {OBFUSCATED_TARGET}", fmt(obf), obf >= OBFUSCATED_TARGET),
    ]  # fmt: skip
    for t in STRUCTURED_PII:
        v = summary["types"].get(t)
        p = v["P"] if v else None
        r = v["R"] if v else None
        ok = p is not None and r is not None and p >= PII_TARGET and r >= PII_TARGET
        rows.append((f"{t} P/R >= {PII_TARGET}", f"{fmt(p)} / {fmt(r)}", ok))
    return rows


def write_report(out: Path, meta: dict[str, str], speed: dict[str, list[float]],
                 summary: dict[str, Any], targets: list[tuple[str, str, bool]],
                 fp_where: dict[str, Any]) -> None:  # fmt: skip
    lines = [
        "# Scanner benchmark", "",
        f"- date: {meta['date']}", f"- machine: {meta['machine']}", f"- python: {meta['python']}",
        f"- command: `{meta['command']}`", f"- corpus: {meta['corpus']}",
        f"- cpu: {meta['pinning']}",
        "", "## Throughput (one core, median of runs)", "",
        "| scanner | MB/s median | runs |", "|---|---|---|",
    ]  # fmt: skip
    for name, rates in speed.items():
        runs = ", ".join(f"{r:.2f}" for r in rates)
        lines.append(f"| {name} | {statistics.median(rates):.2f} | {runs} |")
    if ORACLE in speed:
        bound = round_ratio(speed, ORACLE)
        lines += [
            "",
            f"Oracle bound: {bound:.2f} x the ceiling. It is the ceiling's pass plus one digit-run"
            " pass plus, per reported value (read from a list made before timing), one anchored"
            " `regex` match, its validator and one `Finding`: no search, normalisation or"
            " rejection of look-alikes. A scanner that makes one anchor pass and then confirms"
            " each value in Python cannot be faster than this.",
        ]
    lines += ["", "Ratios to the ceiling are medians of the ratios within each round."]
    lines += ["", "## Targets", "", "| target | value | result |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in targets]
    lines += ["", "## Accuracy (eval.py scoring, span overlap)", ""]
    lines += accuracy_tables(summary)
    if fp_where:
        lines += ["", "False positives by where they landed:", ""]
        for cat, cnt in sorted(fp_where.items(), key=lambda kv: str(kv[0])):
            lines.append(f"- {cat}: " + ", ".join(f"{k} {v}" for k, v in cnt.most_common()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus-dir", type=Path, default=DEFAULT_CORPUS_DIR,
                    help="shared corpus folder with make_corpus.py, eval.py, adapters/")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                    help="labeled JSONL; built with make_corpus.py if missing")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per scanner (median)")
    ap.add_argument("--warmup-docs", type=int, default=200, help="documents scanned before timing")
    ap.add_argument("--skip-naive", action="store_true", help="do not time the naive re baseline")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown report to write")
    return ap.parse_args(argv)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_corpus(args.corpus_dir, args.corpus)
    pinning = pin_one_cpu()
    sys.path.insert(0, str(args.corpus_dir))
    evaluator = load_module(args.corpus_dir / "eval.py", "shared_eval")
    types: dict[str, str] = load_module(args.corpus_dir / "corpus_types.py", "corpus_types").TYPES
    docs: list[dict[str, Any]] = evaluator.load_corpus(args.corpus)
    known: dict[str, str] = dict(types)
    ner_types = {s["type"] for d in docs for s in d["spans"] if s.get("ner")}
    TYPE_OF_CATEGORY.update(known)
    texts = [d["text"] for d in docs]
    detectors = _detector_set()

    preds = [relay_adapter(t) for t in texts]
    scored = evaluator.score(docs, preds, known)
    summary: dict[str, Any] = evaluator.summarize(scored, known, ner_types)
    obf = obfuscated_recall(docs, preds)

    scanners: dict[str, ScanFn] = {
        CEILING: ceiling_scanner(detectors),
        "relay scan()": relay_adapter,
        ORACLE: oracle_bound_scanner(detectors, texts),
    }
    if not args.skip_naive:
        scanners["naive re alternation"] = importlib.import_module("adapters.naive_re").scan
    speed = time_scanners(scanners, texts, args.repeat, args.warmup_docs)
    ours = statistics.median(speed["relay scan()"])
    ratio = round_ratio(speed, "relay scan()")
    bound = round_ratio(speed, ORACLE)
    targets = target_rows(ratio, ours, summary, obf)

    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor()} "
        f"({os.cpu_count()} cpus)",
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "corpus": f"{args.corpus} ({len(docs)} docs, "
        f"{sum(len(t.encode()) for t in texts) / 1e6:.2f} MB)",
        "pinning": pinning,
    }
    write_report(args.out, meta, speed, summary, targets, scored["fp_where"])
    for name, rates in speed.items():
        print(f"{name:36s} {statistics.median(rates):8.2f} MB/s")
    for key in ("pii", "secret"):
        c = summary["categories"][key]
        print(f"{key:8s} P {fmt(c['P'])} R {fmt(c['R'])} F1 {fmt(c['F1'])}")
    print(f"obfuscated recall {obf:.3f}")
    for name, value, ok in targets:
        print(f"  [{verdict(ok)}] {name}: {value}")
    print(f"report: {args.out}")
    print(f"oracle bound: {bound:.2f} x the ceiling (the best this design can reach)")
    print(json.dumps({"ratio": round(ratio, 3), "oracle_bound_ratio": round(bound, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
