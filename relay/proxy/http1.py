"""A lean keep-alive HTTP/1.1 client for the one upstream origin.

Theory of operation: `Client` keeps a last-in-first-out pool of `_Connection`s (asyncio
Protocols) to one origin whose scheme, host and port come only from settings.
`Client.request()` writes the request head and body, waits for the response head and
returns a `Response`; its body arrives as the connection receives it, to be read whole
(`read`) or piece by piece as it comes (`readany`, for event streams, never buffered
whole). Parsing is `http1_parse.py`'s; this file does the I/O.

Rules of this file:
- A connection carries one exchange at a time. It goes back to the pool only when its
  response body has been received to the end of its framing (Content-Length or chunked)
  and both sides allow keep-alive; anything else (a caller that stops reading, a
  timeout, a framing error, cancellation) closes it.
- A pooled connection the upstream closed while idle (EOF seen, transport closing) is
  dropped before reuse. Idle connections are closed after `keepalive_seconds`.
- Retry: a request is resent once, on a fresh connection, only when it went out on a
  reused connection, no byte of an answer came back, and it is replayable (GET / HEAD /
  OPTIONS, or it carries an Idempotency-Key). A POST on a connection the upstream
  closed just as we wrote may already have been acted on (a completion run and billed);
  that cannot be told apart from a stale connection, so it fails, as with aiohttp.
- Timeouts raise TimeoutError: connecting (TCP and TLS) within `connect_timeout`, and
  every wait for response bytes within `read_timeout` (idle time, like aiohttp's
  sock_read). Connect failures raise ConnectError; an upstream that breaks HTTP/1.1
  raises RemoteProtocolError; one that closes early raises IncompleteResponse.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

from multidict import CIMultiDictProxy

from relay.proxy.http1_parse import (
    ConnectError,
    Framing,
    HTTPClientError,
    IncompleteResponse,
    RemoteProtocolError,
    read_head,
)

__all__ = ["Client", "ConnectError", "HTTPClientError", "IncompleteResponse",
           "RemoteProtocolError", "Response"]  # fmt: skip

HIGH_WATER = 256 * 1024  # a streamed body buffered past this pauses reading
REPLAYABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class _NothingReceived(IncompleteResponse):
    """The connection ended before any byte of a response: a candidate for one retry."""


class Response:
    """Status and headers at once; the body as the connection delivers it."""

    __slots__ = ("_chunks", "_conn", "_done", "_error", "_loop", "_paused", "_size",
                 "_timeout", "_waiter", "_whole", "headers", "reason", "status")  # fmt: skip

    def __init__(
        self, conn: _Connection, status: int, reason: str, headers: CIMultiDictProxy[str]
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._conn: _Connection | None = conn
        self._loop = conn.loop
        self._timeout = conn.client.read_timeout
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._whole = False  # read() collects everything: never pause reading for it
        self._paused = False

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type")
        if raw is None:
            return "application/octet-stream"
        return raw.partition(";")[0].strip().lower()

    async def read(self) -> bytes:
        """The whole body."""
        self._whole = True
        self._resume()
        while not self._done and self._error is None:
            await self._wait()
        if self._error is not None:
            raise self._error
        return self._take()

    async def readany(self) -> bytes:
        """What has arrived since the last call, waiting for something; b"" at the end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            await self._wait()
        self._resume()
        return self._take()

    def close(self) -> None:
        """Done with this response: a connection whose body is not finished is closed."""
        conn, self._conn = self._conn, None
        if conn is not None and not self._done:
            conn.abort()
        self._chunks = []

    def _take(self) -> bytes:
        chunks, self._chunks, self._size = self._chunks, [], 0
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._timeout, self._timed_out)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _timed_out(self) -> None:
        self._fail(TimeoutError("the upstream sent nothing within the read timeout"))
        self.close()

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._whole and not self._paused:
            conn = self._conn
            if conn is not None and conn.transport is not None:
                conn.transport.pause_reading()
                self._paused = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            conn = self._conn
            if conn is not None and conn.transport is not None:
                conn.transport.resume_reading()

    def _finish(self) -> None:
        self._done = True
        self._conn = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None and not self._done:
            self._error = error
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)


class _Connection(asyncio.Protocol):
    """One connection to the upstream and the exchange it carries, if any."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.loop = client.loop
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.idle_since = 0.0
        self._busy = False
        self._received = False  # any byte of the current answer
        self._buf = b""  # an incomplete head
        self._head_waiter: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._framing: Framing | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.open = True
        self.client.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            if self._framing is not None:
                self._feed_body(data)
            elif self._busy:
                self._received = True
                self._feed_head(self._buf + data if self._buf else data)
            else:  # bytes nobody asked for: the connection cannot be trusted any more
                self.abort()
        except HTTPClientError as exc:
            self._break(exc)

    def eof_received(self) -> bool:
        self.open = False
        framing, response = self._framing, self._response
        if framing is not None and response is not None:
            try:
                tail = framing.end_of_connection()
            except HTTPClientError as exc:
                self._break(exc)
            else:
                self._end_body(response, tail, b"")
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.client.connections.discard(self)
        if self._busy:
            reason = f"the upstream closed the connection ({exc or 'EOF'})"
            self._break(IncompleteResponse(reason) if self._received else _NothingReceived(reason))

    async def exchange(self, head: bytes, body: bytes | None) -> Response:
        transport = self.transport
        assert transport is not None
        self._busy, self._received, self._buf = True, False, b""
        waiter: asyncio.Future[Response] = self.loop.create_future()
        self._head_waiter = waiter
        if body and len(body) < 65536:
            transport.write(head + body)
        else:
            transport.write(head)
            if body:
                transport.write(body)
        timer = self.loop.call_later(self.client.read_timeout, self._head_timed_out, waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # The answer came, then we were cancelled: the response owns the connection
                # now (and may already have given it back to the pool).
                waiter.result().close()
            elif self._head_waiter is waiter:
                self.abort()
            raise
        finally:
            timer.cancel()
            if self._head_waiter is waiter:
                self._head_waiter = None

    def _head_timed_out(self, waiter: asyncio.Future[Response]) -> None:
        if self._head_waiter is waiter:
            self._break(TimeoutError("the upstream did not answer within the read timeout"))

    def abort(self) -> None:
        self.open = False
        self._busy = False
        if self.transport is not None:
            self.transport.abort()

    def _break(self, error: BaseException) -> None:
        """The exchange failed: tell whoever waits, and never reuse this connection."""
        waiter, response = self._head_waiter, self._response
        self._response, self._framing = None, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if response is not None:
            response._fail(error)
        self.abort()

    def _feed_head(self, buf: bytes) -> None:
        found = read_head(buf)
        if found is None:
            self._buf = buf
            return
        (status, reason, headers, http11), rest = found
        self._buf = b""
        framing = Framing(status, headers, http11)
        response = Response(self, status, reason, headers)
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        self._response, self._framing = response, framing
        if framing.empty:
            self._end_body(response, b"", rest)
        elif rest:
            self._feed_body(rest)

    def _feed_body(self, data: bytes) -> None:
        framing, response = self._framing, self._response
        assert framing is not None and response is not None
        body, rest = framing.feed(data)
        if rest is not None:
            self._end_body(response, body, rest)
        elif body:
            response._feed(body)

    def _end_body(self, response: Response, last: bytes, rest: bytes) -> None:
        keep_alive = self._framing is not None and self._framing.keep_alive
        self._response, self._framing, self._busy = None, None, False
        if last:
            response._feed(last)
        response._finish()
        if rest or not keep_alive or not self.open:
            self.abort()
        else:
            self.client.release(self)


class Client:
    """Keep-alive connections to one origin; `request` sends and returns the answer."""

    def __init__(
        self,
        base_url: str,
        connect_timeout: float,
        read_timeout: float,
        keepalive_seconds: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if parts.port is None else f"{host}:{parts.port}"
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_seconds = keepalive_seconds
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()  # every open one, idle or busy
        self._idle: list[_Connection] = []  # oldest first; reuse takes the newest
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> Response:
        """Send `method target` (path and query below the base URL) and read the head."""
        head = self.encode_head(method, target, headers, body)
        conn = self._reuse()
        if conn is None:
            return await (await self._connect()).exchange(head, body)
        try:
            return await conn.exchange(head, body)
        except _NothingReceived:
            if method not in REPLAYABLE and not _has_idempotency_key(headers):
                raise
        return await (await self._connect()).exchange(head, body)

    def encode_head(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> bytes:
        lines = [f"{method} {self.base_path}{target} HTTP/1.1", "Host: " + self.host_header]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        # What aiohttp's ClientSession added for us: we decode gzip and deflate.
        lines.append("Accept-Encoding: gzip, deflate")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
            if "Content-Type" not in headers and not any(
                name.lower() == "content-type" for name in headers
            ):
                lines.append("Content-Type: application/octet-stream")
        text = "\r\n".join(lines)
        if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
            raise ValueError("a request header or the target contains CR or LF")
        return (text + "\r\n\r\n").encode("utf-8", "surrogateescape")

    def _reuse(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if conn.open and transport is not None and not transport.is_closing():
                return conn
            conn.abort()
        return None

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None,
                )
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError)
            raise ConnectError(exc.strerror or str(exc) or type(exc).__name__) from exc
        return conn

    def release(self, conn: _Connection) -> None:
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self.keepalive_seconds, self._expire)

    def _expire(self) -> None:
        """Close connections idle for keepalive_seconds; the oldest sit at the front."""
        self._sweep = None
        idle = self._idle
        deadline = self.loop.time() - self.keepalive_seconds
        stale = 0
        while stale < len(idle) and idle[stale].idle_since <= deadline:
            idle[stale].abort()
            stale += 1
        del idle[:stale]
        if idle:
            wait = idle[0].idle_since - deadline
            self._sweep = self.loop.call_later(max(wait, 0.05), self._expire)

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._idle.clear()
        for conn in list(self.connections):
            conn.abort()
        await asyncio.sleep(0)  # let the transports run connection_lost


def _has_idempotency_key(headers: Mapping[str, str]) -> bool:
    return any(name.lower() in ("idempotency-key", "x-idempotency-key") for name in headers)
