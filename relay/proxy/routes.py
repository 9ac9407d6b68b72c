"""The /v1 handlers: authenticate, validate, run the chain, forward, relay the answer.

Streams are relayed event by event as the upstream sends them: every upstream read is
decoded, passed through the chain and written before the next read. Once a stream's
headers are out, a failure can only end the stream with one SSE error event.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web

from relay.config import Settings
from relay.errors import (
    InternalError,
    MethodNotAllowed,
    NotFound,
    RelayError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamInterrupted,
    UpstreamTimeout,
)
from relay.metrics import RelayMetrics
from relay.proxy import upstream as up
from relay.proxy.access import AccessControl
from relay.proxy.pipeline import DROP, Chain, Exchange, LocalReply
from relay.proxy.sse import SSEDecoder, encode_json
from relay.proxy.validation import Validator, parse_json_object, read_body, validate_chat
from relay.proxy.validation import validate_model as validate_model_body
from relay.spool import EvidenceSpool
from relay.store.base import Store

log = logging.getLogger("orca.relay")

REQUEST_ID = "x-request-id"
OVERHEAD = "x-orca-overhead-ms"


@dataclass(frozen=True)
class RouteSpec:
    name: str  # the `route` metric label
    method: str
    path: str  # relay path pattern
    upstream_path: str  # appended to ORCA_UPSTREAM_URL; may name match_info parts
    validate: Validator | None  # None: no request body
    streams: bool = False
    ends_with_done: bool = False  # a complete stream ends with `data: [DONE]`


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("chat_completions", "POST", "/v1/chat/completions", "/chat/completions",
              validate_chat, streams=True, ends_with_done=True),
    RouteSpec("completions", "POST", "/v1/completions", "/completions",
              validate_model_body, streams=True, ends_with_done=True),
    RouteSpec("responses", "POST", "/v1/responses", "/responses",
              validate_model_body, streams=True),
    RouteSpec("embeddings", "POST", "/v1/embeddings", "/embeddings", validate_model_body),
    RouteSpec("models", "GET", "/v1/models", "/models", None),
    RouteSpec("models", "GET", "/v1/models/{model}", "/models/{model}", None),
)  # fmt: skip


class RequestIds:
    """Request ids: a random per-process prefix and a counter. Unique across workers and
    replicas (64 random bits per process) without a system call per request; they name
    requests, they are not secrets."""

    def __init__(self) -> None:
        self._prefix = "req_" + secrets.token_hex(8)
        self._next = itertools.count(1).__next__

    def __call__(self) -> str:
        return f"{self._prefix}{self._next():08x}"


class Timing:
    """Total time and upstream wait of one exchange; overhead is the difference."""

    __slots__ = ("start", "upstream_wait")

    def __init__(self) -> None:
        self.start = perf_counter()
        self.upstream_wait = 0.0

    def overhead(self) -> float:
        return max(0.0, perf_counter() - self.start - self.upstream_wait)

    def overhead_header(self) -> str:
        return f"{self.overhead() * 1000:.3f}"


def error_response(error: RelayError, request_id: str, timing: Timing) -> web.Response:
    return web.Response(
        status=error.status,
        body=error.body_bytes(),
        content_type="application/json",
        headers={REQUEST_ID: request_id, OVERHEAD: timing.overhead_header()},
    )


@dataclass
class RelayContext:
    settings: Settings
    access: AccessControl
    upstream: up.Upstream
    chain: Chain
    metrics: RelayMetrics
    store: Store
    evidence: EvidenceSpool
    request_ids: RequestIds = field(default_factory=RequestIds)


class RelayHandler:
    """One instance per route; `handle` is the aiohttp handler."""

    def __init__(self, spec: RouteSpec, ctx: RelayContext) -> None:
        self.spec = spec
        self.ctx = ctx
        m = ctx.metrics
        self._request_duration = m.request_duration.labels(spec.name)
        self._overhead = m.overhead.labels(spec.name)
        self._upstream_duration = m.upstream_duration.labels(spec.name)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        timing = Timing()
        request_id = self.ctx.request_ids()
        metrics = self.ctx.metrics
        metrics.inflight_requests.inc()
        status = 500
        try:
            response = await self._handle(request, request_id, timing)
            status = response.status
            return response
        except RelayError as error:
            status = error.status
            if isinstance(error, UpstreamError):
                metrics.upstream_errors.labels(error.code).inc()
            return error_response(error, request_id, timing)
        except asyncio.CancelledError:
            status = 499  # the client went away (nginx's convention)
            raise
        except Exception:
            log.exception("unhandled error in %s (request %s)", self.spec.name, request_id)
            return error_response(
                InternalError("internal error; see the relay log for this request id"),
                request_id,
                timing,
            )
        finally:
            metrics.inflight_requests.dec()
            metrics.requests.labels(self.spec.name, str(status)).inc()
            self._request_duration.observe(perf_counter() - timing.start)
            self._overhead.observe(timing.overhead())
            if timing.upstream_wait:
                self._upstream_duration.observe(timing.upstream_wait)

    async def _handle(
        self, request: web.Request, request_id: str, timing: Timing
    ) -> web.StreamResponse:
        ctx = self.ctx
        spec = self.spec
        key = ctx.access.authenticate(request.headers.get("Authorization"))
        raw: bytes | None = None
        body: dict[str, Any] | None = None
        if spec.validate is not None:
            raw = await read_body(request, ctx.settings.max_body_bytes)
            declared = request.content_type if "Content-Type" in request.headers else ""
            body = parse_json_object(raw, declared, request.charset)
            spec.validate(body)
        stream = spec.streams and body is not None and body.get("stream") is True
        x = Exchange(request_id, spec.name, key, body, stream)
        try:
            reply = ctx.chain.decode_request(x)
            if reply is not None:
                raise reply.error
            payload = orjson.dumps(x.body) if x.body_changed else raw
            headers = up.request_headers(request.headers, ctx.upstream.provider_key)
            path = spec.upstream_path
            if request.match_info:
                path = path.format(**{k: quote(v, safe="") for k, v in request.match_info.items()})
            query = request.query if request.query_string else None
            sent = perf_counter()
            upstream = await ctx.upstream.send(spec.method, path, headers, payload, query)
            try:
                timing.upstream_wait = perf_counter() - sent
                if x.stream and upstream.status == 200:
                    if upstream.content_type != "text/event-stream":
                        raise UpstreamBadResponse(
                            f"the upstream answered a stream request with {upstream.content_type}"
                        )
                    return await self._relay_stream(request, x, upstream, timing)
                got = perf_counter()
                try:
                    data = await upstream.read()
                except up.BODY_ERRORS as exc:
                    raise up.body_failure(exc) from None
                timing.upstream_wait += perf_counter() - got
                return self._relay_whole(x, upstream, data, timing)
            finally:
                upstream.close()
        finally:
            await self._finish(x)

    async def _finish(self, x: Exchange) -> None:
        """Once per exchange: on_complete, then its evidence committed (group commit with
        other requests') before the answer's last byte leaves."""
        if x.metadata.get("finished"):
            return
        x.metadata["finished"] = True
        self.ctx.chain.on_complete(x)
        if x.evidence:
            await self.ctx.evidence.append(x.evidence)

    def _relay_whole(
        self, x: Exchange, upstream: up.UpstreamResponse, data: bytes, timing: Timing
    ) -> web.Response:
        headers = up.response_headers(upstream.headers)
        if upstream.status < 300 and self.spec.validate is not None:
            try:
                x.response = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamBadResponse(
                    f"the upstream sent a {upstream.status} answer that is not JSON"
                ) from None
            x.completed = True
            reply = self.ctx.chain.encode_response(x)
            if reply is not None:
                raise reply.error
            if x.response_changed:
                data = orjson.dumps(x.response)
        headers[REQUEST_ID] = x.request_id
        headers[OVERHEAD] = timing.overhead_header()
        return web.Response(status=upstream.status, body=data, headers=headers)

    async def _relay_stream(
        self,
        request: web.Request,
        x: Exchange,
        upstream: up.UpstreamResponse,
        timing: Timing,
    ) -> web.StreamResponse:
        chain = self.ctx.chain
        metrics = self.ctx.metrics
        headers = up.response_headers(upstream.headers)
        headers[REQUEST_ID] = x.request_id
        headers["Cache-Control"] = "no-cache"
        headers[OVERHEAD] = timing.overhead_header()
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        metrics.inflight_streams.inc()
        decoder = SSEDecoder()
        saw_done = False
        failure: RelayError | None = None
        try:
            while True:
                waited = perf_counter()
                try:
                    chunk = await upstream.readany()
                except TimeoutError:
                    failure = UpstreamTimeout("the upstream went silent mid-stream")
                    break
                except up.STREAM_ERRORS as exc:
                    failure = UpstreamInterrupted(f"the upstream stream broke off: {exc}")
                    break
                finally:
                    timing.upstream_wait += perf_counter() - waited
                if not chunk:
                    break
                out: list[bytes] = []
                for event in decoder.feed(chunk):
                    verdict = chain.encode_chunk(x, event)
                    if verdict is DROP:
                        continue
                    if isinstance(verdict, LocalReply):
                        failure = verdict.error
                        break
                    saw_done = saw_done or event.is_done
                    out.append(event.raw)
                if out:
                    await response.write(b"".join(out))
                if failure is not None:
                    break
            if failure is None and (decoder.pending() or (self.spec.ends_with_done
                                                           and not saw_done)):
                failure = UpstreamInterrupted("the upstream closed the stream before it ended")
            if failure is None:
                x.completed = True
            else:
                if isinstance(failure, UpstreamError):
                    metrics.upstream_errors.labels(failure.code).inc()
                await response.write(encode_json(failure.body()))
            await self._finish(x)
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            log.info("client left during stream %s", x.request_id)
        finally:
            metrics.inflight_streams.dec()
        return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def add_routes(app: web.Application, ctx: RelayContext) -> None:
    known: dict[str, set[str]] = {}
    for spec in ROUTES:
        app.router.add_route(spec.method, spec.path, RelayHandler(spec, ctx).handle)
        known.setdefault(spec.path, set()).add(spec.method)
    app.router.add_get("/healthz", healthz)
    not_found_metric = ctx.metrics.requests

    async def fallback(request: web.Request) -> web.Response:
        timing = Timing()
        allowed = None
        for path, methods in known.items():
            if _same_shape(path, request.path):
                allowed = methods
        error: RelayError
        if allowed is not None:
            error = MethodNotAllowed(
                f"{request.method} is not allowed on {request.path}; use "
                + ", ".join(sorted(allowed))
            )
        else:
            error = NotFound(
                f"{request.method} {request.path} is not a route the relay serves",
                code="route_not_found",
            )
        not_found_metric.labels("other", str(error.status)).inc()
        return error_response(error, ctx.request_ids(), timing)

    app.router.add_route("*", "/{tail:.*}", fallback)


def _same_shape(pattern: str, path: str) -> bool:
    a, b = pattern.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(p.startswith("{") or p == q for p, q in zip(a, b, strict=True))
