"""Process wiring: shared services, the relay and admin applications, `serve` with
graceful SIGTERM, and `--workers N` (N processes sharing both ports via SO_REUSEPORT
and one store).

Shutdown order on SIGTERM: stop accepting on both listeners, let in-flight requests and
streams finish for up to ORCA_SHUTDOWN_GRACE_SECONDS, cancel what is left, flush the
store's write queue, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection as mp_connection
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from aiohttp import web

from relay.accounts import BootstrapResult, bootstrap_if_empty
from relay.admin.app import add_api
from relay.admin.auth import Sessions
from relay.compliance.signing import KeyRing, ensure_signing_key
from relay.config import Settings, parse_listen
from relay.firewall.filter import FirewallFilter
from relay.guardrail.detectors import DetectorSet, default_detector_set
from relay.guardrail.filter import GuardrailFilter
from relay.metrics import SNAPSHOT_DIR_ENV as METRICS_DIR_ENV
from relay.metrics import SNAPSHOT_SECONDS, RelayMetrics, retire_snapshot
from relay.proxy.access import AccessControl
from relay.proxy.metering import MeteringFilter
from relay.proxy.pipeline import Chain
from relay.proxy.routes import RelayContext, add_routes, healthz
from relay.proxy.upstream import Upstream
from relay.spool import EvidenceSpool
from relay.store.base import Store, open_store

log = logging.getLogger("orca.server")


@dataclass
class Services:
    settings: Settings
    store: Store
    access: AccessControl
    upstream: Upstream
    metrics: RelayMetrics
    chain: Chain
    evidence: EvidenceSpool


def build_chain(
    access: AccessControl, metrics: RelayMetrics, detectors: DetectorSet,
    scan_cache_entries: int = 0,
) -> Chain:
    """The one place the order of controls is decided. Requests: quota first (a refused
    request costs no scan), then the firewall, then the guardrail. Answers: the firewall
    first as well, so it decides on what the upstream sent before the guardrail masks
    it and its deny wins (API.md), then the guardrail, then metering."""
    metering = MeteringFilter(access, metrics)
    firewall = FirewallFilter(access, detectors, metrics)
    guardrail = GuardrailFilter(access, detectors, metrics, scan_cache_entries)
    return Chain([metering, firewall, guardrail], encode_order=[firewall, guardrail, metering])


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open everything both listeners share; close it in reverse, flushing the store."""
    metrics = RelayMetrics(os.environ.get(METRICS_DIR_ENV))
    store = open_store(settings.effective_database_url)
    await store.open()
    store.on_write_failure = metrics.evidence_write_failures.inc
    detectors = default_detector_set()
    access = AccessControl(
        store, settings.state_refresh_seconds, [d.id for d in detectors.detectors]
    )
    upstream = Upstream(settings)
    evidence = EvidenceSpool(store, Path(settings.data_dir) / "spool", metrics)
    publisher = asyncio.create_task(_publish_metrics(metrics, store), name="orca-metrics")
    try:
        await access.start()
        await upstream.start()
        await evidence.start()
        chain = build_chain(access, metrics, detectors, settings.scan_cache_entries)
        yield Services(settings, store, access, upstream, metrics, chain, evidence)
    finally:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
        await evidence.stop()
        await upstream.close()
        await access.stop()
        await store.close()
        metrics.write_snapshot()


async def _publish_metrics(metrics: RelayMetrics, store: Store) -> None:
    """Sample the store queue and publish this worker's values for the others."""
    while True:
        metrics.evidence_queue_depth.set(store.queue_depth())
        try:
            metrics.write_snapshot()
        except OSError as exc:
            log.warning("cannot write the metrics snapshot: %s", exc)
        await asyncio.sleep(SNAPSHOT_SECONDS)


def build_relay_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=services.settings.max_body_bytes)
    ctx = RelayContext(
        services.settings, services.access, services.upstream, services.chain, services.metrics,
        services.store, services.evidence,
    )
    add_routes(app, ctx)
    return app


def build_admin_app(services: Services) -> web.Application:
    app = web.Application()

    async def metrics(request: web.Request) -> web.Response:
        body = services.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    async def readyz(request: web.Request) -> web.Response:
        # Store down: still ready — the relay enforces from its cached controls and spools
        # evidence to disk — but says so, so dashboards and alerts see the degraded state.
        spooled = services.evidence.spooled
        try:
            await services.store.schema_version()
        except Exception as exc:
            log.warning("readiness check: the store does not answer: %s", exc)
            return web.json_response({"status": "degraded", "store": "down",
                                      "spooled_events": spooled})
        status = "degraded" if spooled else "ready"
        return web.json_response({"status": status, "store": "ok", "spooled_events": spooled})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    settings = services.settings
    sessions = Sessions(services.store, settings.session_ttl_seconds,
                        settings.session_idle_seconds)
    add_api(app, services.store, sessions, settings.session_ttl_seconds,
            services.access.known_detectors, settings.console_origins,
            KeyRing(settings.effective_signing_key_file), settings.upstream_url)
    return app


async def prepare_state(settings: Settings) -> BootstrapResult | None:
    """Migrate the store, create the signing key, bootstrap an empty store."""
    ensure_signing_key(settings.effective_signing_key_file)
    store = open_store(settings.effective_database_url)
    await store.open()
    try:
        async with store.exclusive("bootstrap"):  # replicas starting together: one wins
            return await bootstrap_if_empty(store)
    finally:
        await store.close()


_EXAMPLE_BODY = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'


def print_bootstrap(result: BootstrapResult, settings: Settings, out: TextIO) -> None:
    host, port = parse_listen(settings.relay_listen)
    base = f"http://{host}:{port}/v1"
    out.write(
        "\n"
        "orca-relay: first start. These credentials are shown once and never again:\n"
        f"  workspace   {result.workspace.id} (default, plan {result.workspace.plan})\n"
        f"  admin user  {result.admin_email}\n"
        f"  password    {result.admin_password}\n"
        f"  relay key   {result.key_secret}   (id {result.key_id})\n"
        f"Point your OpenAI client at base_url={base} with api_key=<relay key>, e.g.\n"
        f"  curl {base}/chat/completions -H 'Authorization: Bearer {result.key_secret}' \\\n"
        "    -H 'Content-Type: application/json' \\\n"
        "    -d '" + _EXAMPLE_BODY + "'\n"
        "Lost them? `orca-relay key create --workspace WS` makes another key.\n\n"
    )
    out.flush()


async def run_worker(settings: Settings, reuse_port: bool, on_ready: Callable[[], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_services(settings) as services:
        runners = []
        for app, listen in (
            (build_relay_app(services), settings.relay_listen),
            (build_admin_app(services), settings.admin_listen),
        ):
            runner = web.AppRunner(
                app,
                handle_signals=False,
                access_log=None,
                shutdown_timeout=settings.shutdown_grace_seconds,
                handler_cancellation=True,
            )
            await runner.setup()
            host, port = parse_listen(listen)
            site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
            await site.start()
            runners.append(runner)
        log.info(
            "relay on %s, admin on %s, upstream %s",
            settings.relay_listen,
            settings.admin_listen,
            settings.upstream_url,
        )
        on_ready()
        await stop.wait()
        log.info("shutting down: finishing in-flight requests (grace %ss)",
                 settings.shutdown_grace_seconds)
        await asyncio.gather(*(r.cleanup() for r in runners))
    log.info("stopped")


def _event_loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not settings.uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; using the default asyncio loop")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _worker_main(settings: Settings, log_level: str) -> None:
    from relay.cli import configure_logging

    configure_logging(log_level)
    with asyncio.Runner(loop_factory=_event_loop_factory(settings)) as runner:
        runner.run(run_worker(settings, reuse_port=True, on_ready=lambda: None))


def serve(settings: Settings, out: TextIO = sys.stdout) -> int:
    result = asyncio.run(prepare_state(settings))
    if result is not None:
        print_bootstrap(result, settings, out)
    if settings.workers == 1:
        with asyncio.Runner(loop_factory=_event_loop_factory(settings)) as runner:
            runner.run(run_worker(settings, reuse_port=False, on_ready=lambda: None))
        return 0
    return _supervise(settings)


def _supervise(settings: Settings) -> int:
    """Start N workers and forward SIGTERM/SIGINT to them. If one dies on its own, stop
    the rest: a half-running relay would hide the failure behind the shared port."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="orca-metrics-"))
    os.environ[METRICS_DIR_ENV] = str(metrics_dir)  # inherited by the spawned workers
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_worker_main, args=(settings, settings.log_level), name=f"orca-worker-{i}"
        )
        for i in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    log.info("started %d workers: %s", len(workers), [w.pid for w in workers])
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.is_alive() and worker.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    code = 0
    running = list(workers)
    while running:
        mp_connection.wait([w.sentinel for w in running])
        for worker in [w for w in running if not w.is_alive()]:
            running.remove(worker)
            if worker.pid is not None:
                retire_snapshot(metrics_dir, worker.pid)
            if worker.exitcode != 0:
                code = 1
                if not stopping:
                    log.error("worker %s exited with %s; stopping the others",
                              worker.pid, worker.exitcode)
                    stop_all()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return code
