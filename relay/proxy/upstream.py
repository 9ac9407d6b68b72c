"""The one HTTP client to the upstream, header hygiene, and failure mapping.

The upstream address comes only from configuration; the client's Authorization never
travels upstream (the operator's provider key replaces it). Failures become
UpstreamError subclasses so callers render one OpenAI-shaped 502/504.

Two clients give the same `UpstreamResponse` surface: the lean keep-alive HTTP/1.1
client of `http1.py` (ORCA_UPSTREAM_CLIENT=lean, the default) and aiohttp's
ClientSession (`aiohttp`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import yarl
from multidict import CIMultiDict, MultiMapping

from relay.config import Settings
from relay.errors import UpstreamBadResponse, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from relay.proxy import http1

# RFC 9110 §7.6.1 hop-by-hop headers, plus the ones a proxy must set itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded upstream: credentials and identity belong to the operator, and the
# body framing and encoding are the relay's to decide.
REQUEST_DROP = HOP_BY_HOP | {
    "host",
    "authorization",
    "api-key",
    "cookie",
    "openai-organization",
    "openai-project",
    "content-length",
    "accept-encoding",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
}
# The relay re-frames and may rewrite the body, and sets its own request id.
RESPONSE_DROP = HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "set-cookie",
    "x-request-id",
    "date",
    "server",
}


def _connection_listed(headers: Mapping[str, str]) -> frozenset[str]:
    value = headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(",") if token.strip())


def request_headers(client: Mapping[str, str], provider_key: str) -> dict[str, str]:
    """Headers for the upstream request: the client's, minus hop-by-hop and credentials."""
    drop = REQUEST_DROP
    if "Connection" in client:
        drop = drop | _connection_listed(client)
    out = {name: value for name, value in client.items() if name.lower() not in drop}
    if provider_key:
        out["Authorization"] = "Bearer " + provider_key
    return out


def response_headers(upstream: MultiMapping[str]) -> CIMultiDict[str]:
    """Headers for the client: the upstream's, minus hop-by-hop and what the relay sets."""
    drop = RESPONSE_DROP
    if "Connection" in upstream:
        drop = drop | _connection_listed(upstream)
    out: CIMultiDict[str] = CIMultiDict(
        [(name, value) for name, value in upstream.items() if name.lower() not in drop]
    )
    upstream_id = upstream.get("x-request-id")
    if upstream_id is not None:
        out["x-upstream-request-id"] = upstream_id
    return out


class UpstreamResponse(Protocol):
    """What `Upstream.send` returns: status and headers read, the body still to come."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> MultiMapping[str]: ...
    @property
    def content_type(self) -> str: ...
    async def read(self) -> bytes: ...
    async def readany(self) -> bytes: ...
    def close(self) -> None: ...


class _AiohttpResponse:
    """aiohttp's ClientResponse behind the UpstreamResponse surface."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: MultiMapping[str] = response.headers

    @property
    def content_type(self) -> str:
        return self._response.content_type

    async def read(self) -> bytes:
        return await self._response.read()

    async def readany(self) -> bytes:
        return await self._response.content.readany()

    def close(self) -> None:
        self._response.close()


class Upstream:
    """Owns the upstream client; `send` returns the response with headers read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.upstream_url.rstrip("/")
        self.provider_key = settings.upstream_api_key
        self.client: http1.Client | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        settings = self.settings
        if settings.upstream_client == "lean":
            self.client = http1.Client(
                settings.upstream_url,
                connect_timeout=settings.upstream_connect_timeout_seconds,
                read_timeout=settings.upstream_timeout_seconds,
            )
            return
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.upstream_connect_timeout_seconds,
            sock_read=settings.upstream_timeout_seconds,
        )
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=60, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        query: Mapping[str, str] | None = None,
    ) -> UpstreamResponse:
        if self.client is None:
            return await self._send_aiohttp(method, path, headers, body, query)
        if query:
            path += "?" + yarl.URL.build(query=query).raw_query_string
        try:
            return await self.client.request(method, path, headers, body)
        except SEND_ERRORS as exc:
            raise send_failure(exc) from None

    async def _send_aiohttp(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None,
        query: Mapping[str, str] | None,
    ) -> UpstreamResponse:
        assert self._session is not None, "Upstream.start() not called"
        try:
            response = await self._session.request(
                method, self.base + path, headers=headers, data=body, params=query
            )
        except SEND_ERRORS as exc:
            raise send_failure(exc) from None
        return _AiohttpResponse(response)


# What reading an upstream body may raise when the upstream misbehaves; all but
# TimeoutError mean the body broke off.
STREAM_ERRORS = (aiohttp.ClientError, http1.HTTPClientError)
BODY_ERRORS = (TimeoutError, asyncio.IncompleteReadError, *STREAM_ERRORS)
# What sending a request may raise, with either client.
SEND_ERRORS = (TimeoutError, *STREAM_ERRORS)


def send_failure(exc: BaseException) -> UpstreamError:
    """The UpstreamError for a request that got no answer (either client's exception)."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("the upstream did not answer in time")
    if isinstance(exc, http1.ConnectError | aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"cannot connect to the upstream: {exc.strerror}")
    return UpstreamBadResponse(f"the upstream sent a malformed response: {exc}")


def body_failure(exc: BaseException) -> UpstreamError:
    """The UpstreamError that explains why a response body could not be read whole."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("the upstream stopped sending before the response ended")
    return UpstreamBadResponse(f"the upstream response was cut short: {exc}")
