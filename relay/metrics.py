"""Every Prometheus metric of orca-relay, declared in one place (documented in the README).

Labels are closed enums (route, status, kind, code); never a key, user, URL or any text a
request carried. With `--workers N` the supervisor sets PROMETHEUS_MULTIPROC_DIR before
the workers start, every worker writes its values there, and `/metrics` on any worker
aggregates all of them (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Route label values: the /v1 routes the relay serves, plus "other" for anything refused.
ROUTES = ("chat_completions", "completions", "embeddings", "models", "responses", "other")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir(path: Path) -> None:
    """Called by the supervisor before it starts workers: a clean directory for their files."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)


class RelayMetrics:
    """Built once per process; hung off the application, never a module global."""

    def __init__(self) -> None:
        # In multiprocess mode values live in files and are collected by
        # MultiProcessCollector, so the metrics join no registry of their own.
        self._multiprocess = multiprocess_enabled()
        self.registry = CollectorRegistry()
        reg = None if self._multiprocess else self.registry

        self.requests = Counter(
            "orca_relay_requests_total",
            "Relay responses by route and HTTP status.",
            ["route", "status"],
            registry=reg,
        )
        self.request_duration = Histogram(
            "orca_relay_request_duration_seconds",
            "Relay request duration, first byte in to last byte out.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.upstream_duration = Histogram(
            "orca_relay_upstream_duration_seconds",
            "Time spent waiting on the upstream (whole body, or whole stream).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.overhead = Histogram(
            "orca_relay_overhead_seconds",
            "The relay's own time per request: total minus time waiting on the upstream.",
            ["route"],
            buckets=OVERHEAD_BUCKETS,
            registry=reg,
        )
        self.tokens = Counter(
            "orca_relay_tokens_total",
            "Tokens metered against relay keys (kind=metered) and given back (kind=refunded).",
            ["kind"],
            registry=reg,
        )
        self.quota_rejections = Counter(
            "orca_relay_quota_rejections_total",
            "Requests refused with 429 quota_exceeded.",
            registry=reg,
        )
        self.upstream_errors = Counter(
            "orca_relay_upstream_errors_total",
            "Upstream failures the relay answered for (unreachable, timeout, bad response, "
            "interrupted stream), by error code.",
            ["code"],
            registry=reg,
        )
        self.inflight_requests = Gauge(
            "orca_relay_inflight_requests",
            "Relay requests being handled now (streams included).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.inflight_streams = Gauge(
            "orca_relay_inflight_streams",
            "SSE streams being relayed now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.evidence_queue_depth = Gauge(
            "orca_relay_evidence_queue_depth",
            "Writes waiting for the store's next group commit.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.evidence_write_failures = Counter(
            "orca_relay_evidence_write_failures_total",
            "Store writes that failed (each counts the records of the failed group).",
            registry=reg,
        )
        for kind in ("metered", "refunded"):
            self.tokens.labels(kind)

    def exposition(self) -> bytes:
        if self._multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    @staticmethod
    def worker_exited(pid: int) -> None:
        """Drop a dead worker's live gauges (the supervisor calls this)."""
        if multiprocess_enabled():
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
