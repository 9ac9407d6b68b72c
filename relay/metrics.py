"""Every Prometheus metric of orca-relay, declared in one place (documented in the README).

Rules of this file:
- Labels are closed enums (route, status, kind, code); never a key, user, URL or any text
  a request carried.
- Recording is plain arithmetic on the event loop thread: no lock, no allocation once a
  label set exists. (prometheus-client's own metric objects take a lock per operation;
  at ten operations per request that was a measurable share of the relay's overhead.)
  prometheus-client still does the exposition, through a custom collector.
- With `--workers N` each worker writes a snapshot of its values to a shared directory
  every `SNAPSHOT_SECONDS` and on exit; `/metrics` on any worker reports its own live
  values plus every other worker's latest snapshot. When a worker exits, the supervisor
  zeroes its gauges (`retire_snapshot`); its counters and histograms stay in the sum,
  as in prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

SNAPSHOT_DIR_ENV = "ORCA_METRICS_DIR"
SNAPSHOT_SECONDS = 0.5

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
)  # fmt: skip

Labels = tuple[str, ...]


class _Value:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value


class _HistogramValue:
    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value


class _Family:
    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()):
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.children: dict[Labels, Any] = {}

    def _new(self) -> Any:
        return _Value()

    def labels(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}")
            child = self.children[values] = self._new()
        return child

    def snapshot(self) -> dict[str, Any]:
        return {"|".join(k): v.value for k, v in self.children.items()}


class Counter(_Family):
    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def get(self, *labels: str) -> float:
        child = self.children.get(labels)
        return child.value if child is not None else 0.0


class Gauge(Counter):
    kind = "gauge"

    def dec(self, amount: float = 1.0) -> None:
        self.labels().dec(amount)

    def set(self, value: float) -> None:
        self.labels().set(value)


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...],
                 buckets: tuple[float, ...]) -> None:
        super().__init__(name, documentation, labelnames)
        self.buckets = buckets

    def _new(self) -> _HistogramValue:
        return _HistogramValue(self.buckets)

    def snapshot(self) -> dict[str, Any]:
        return {"|".join(k): [v.counts, v.sum] for k, v in self.children.items()}


class RelayMetrics:
    """Built once per process; hung off the application, never a module global."""

    def __init__(self, snapshot_dir: str | None = None) -> None:
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self.requests = Counter(
            "orca_relay_requests_total", "Relay responses by route and HTTP status.",
            ("route", "status"))
        self.request_duration = Histogram(
            "orca_relay_request_duration_seconds",
            "Relay request duration, first byte in to last byte out.", ("route",),
            LATENCY_BUCKETS)
        self.upstream_duration = Histogram(
            "orca_relay_upstream_duration_seconds",
            "Time spent waiting on the upstream (whole body, or whole stream).", ("route",),
            LATENCY_BUCKETS)
        self.overhead = Histogram(
            "orca_relay_overhead_seconds",
            "The relay's own time per request: total minus time waiting on the upstream.",
            ("route",), OVERHEAD_BUCKETS)
        self.tokens = Counter(
            "orca_relay_tokens_total",
            "Tokens metered against relay keys (kind=metered) and given back (kind=refunded).",
            ("kind",))
        self.guardrail_findings = Counter(
            "orca_relay_guardrail_findings_total",
            "Guardrail findings a rule covered, by category, the rule's verdict, the outcome "
            "applied and the guardrail's mode.", ("category", "verdict", "outcome", "mode"))
        self.firewall_decisions = Counter(
            "orca_relay_firewall_decisions_total",
            "Firewall decisions, by the policy's verdict, the outcome applied and the "
            "policy's mode.", ("verdict", "outcome", "mode"))
        self.quota_rejections = Counter(
            "orca_relay_quota_rejections_total", "Requests refused with 429 quota_exceeded.")
        self.upstream_errors = Counter(
            "orca_relay_upstream_errors_total",
            "Upstream failures the relay answered for, by error code.", ("code",))
        self.inflight_requests = Gauge(
            "orca_relay_inflight_requests", "Relay requests being handled now (streams included).")
        self.inflight_streams = Gauge(
            "orca_relay_inflight_streams", "SSE streams being relayed now.")
        self.evidence_queue_depth = Gauge(
            "orca_relay_evidence_queue_depth", "Writes waiting for the store's next group commit.")
        self.evidence_spooled = Gauge(
            "orca_relay_evidence_spooled",
            "Evidence events on local disk waiting for the store to come back.")
        self.evidence_write_failures = Counter(
            "orca_relay_evidence_write_failures_total",
            "Store writes that failed (each counts the records of the failed group).")
        for kind in ("metered", "refunded"):
            self.tokens.labels(kind)
        for family in self.families():
            if not family.labelnames:
                family.labels()

    def families(self) -> list[_Family]:
        return [v for v in vars(self).values() if isinstance(v, _Family)]

    # ---- exposition ------------------------------------------------------------------

    def exposition(self) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry)

    def snapshot(self) -> dict[str, Any]:
        return {f.name: f.snapshot() for f in self.families()}

    def write_snapshot(self) -> None:
        """Publish this worker's values for the others' /metrics (atomic rename)."""
        if self.snapshot_dir is None:
            return
        final = self.snapshot_dir / f"{os.getpid()}.json"
        partial = final.with_suffix(".tmp")
        partial.write_bytes(orjson.dumps(self.snapshot()))
        os.replace(partial, final)

    def _merged(self) -> dict[str, dict[str, Any]]:
        merged = self.snapshot()
        if self.snapshot_dir is None:
            return merged
        own = f"{os.getpid()}.json"
        for file in self.snapshot_dir.glob("*.json"):
            if file.name == own:
                continue
            try:
                other = orjson.loads(file.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            for family in self.families():
                _add(merged[family.name], other.get(family.name, {}), family.kind)
        return merged


def retire_snapshot(directory: Path, pid: int) -> None:
    """A worker exited: keep its counters and histograms, drop its gauges."""
    file = directory / f"{pid}.json"
    try:
        values = orjson.loads(file.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return
    gauges = {f.name for f in RelayMetrics().families() if f.kind == "gauge"}
    partial = file.with_suffix(".tmp")
    partial.write_bytes(orjson.dumps({k: v for k, v in values.items() if k not in gauges}))
    os.replace(partial, file)


def _add(into: dict[str, Any], other: dict[str, Any], kind: str) -> None:
    for key, value in other.items():
        if kind != "histogram":
            into[key] = into.get(key, 0.0) + value
            continue
        counts, total = value
        if key in into:
            mine = into[key]
            into[key] = [[a + b for a, b in zip(mine[0], counts, strict=True)], mine[1] + total]
        else:
            into[key] = [list(counts), total]


class _Collector:
    def __init__(self, metrics: RelayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        merged = self._metrics._merged()
        for family in self._metrics.families():
            values = merged[family.name]
            labelnames = list(family.labelnames)
            if isinstance(family, Histogram):
                h = HistogramMetricFamily(family.name, family.documentation, labels=labelnames)
                for key, (counts, total) in sorted(values.items()):
                    running, buckets = 0, []
                    for bound, count in zip((*family.buckets, float("inf")), counts, strict=True):
                        running += count
                        buckets.append((_bound(bound), running))
                    h.add_metric(_split(key, labelnames), buckets, total)
                yield h
                continue
            cls = GaugeMetricFamily if family.kind == "gauge" else CounterMetricFamily
            name = family.name.removesuffix("_total") if cls is CounterMetricFamily else family.name
            m = cls(name, family.documentation, labels=labelnames)
            for key, value in sorted(values.items()):
                m.add_metric(_split(key, labelnames), value)
            yield m


def _split(key: str, labelnames: list[str]) -> list[str]:
    return key.split("|") if labelnames else []


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
