"""The lean HTTP/1.1 upstream client against scripted raw loopback servers: framing,
keep-alive, stale connections, limits, timeouts, and what the relay answers for each."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay.proxy import http1
from tests.conftest import RelayFactory, Upstream

Reply = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
OK_JSON = b'{"id":"x","object":"chat.completion","choices":[]}'


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    return head + body + b"0\r\n" + trailer + b"\r\n"


def hang_up(data: bytes = b"") -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    """A reply that writes `data` and closes the connection."""

    async def go(writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        writer.close()

    return go


@dataclass
class Scripted:
    """A raw HTTP/1.1 server: each request, on whatever connection, gets the next reply."""

    replies: list[Reply]
    accepted: int = 0
    active: int = 0  # handlers still running
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.active += 1
        try:
            while not writer.is_closing():
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0)
                if isinstance(reply, bytes):
                    writer.write(reply)
                    await writer.drain()
                else:
                    await reply(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.active -= 1


ServerFactory = Callable[..., Awaitable[Scripted]]


@pytest.fixture
async def scripted() -> AsyncIterator[ServerFactory]:
    scripts: list[Scripted] = []

    async def go(*replies: Reply) -> Scripted:
        script = Scripted(list(replies))
        script.server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        scripts.append(script)
        return script

    yield go
    for script in scripts:
        assert script.server is not None
        script.server.close()
        await _until(lambda: script.active == 0)  # noqa: B023 (awaited right here)
        await script.server.wait_closed()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., http1.Client]]:
    clients: list[http1.Client] = []

    def go(url: str, read_timeout: float = 5.0) -> http1.Client:
        client = http1.Client(url, connect_timeout=2.0, read_timeout=read_timeout)
        clients.append(client)
        return client

    yield go
    for client in clients:
        await client.close()


async def _get(client: http1.Client, path: str = "/models") -> bytes:
    response = await client.request("GET", path, {}, None)
    try:
        return await response.read()
    finally:
        response.close()


async def _until(check: Callable[[], bool]) -> None:
    """Yield to the loop until the check holds (the client's own callbacks make it true)."""
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0)


# ---- framing -------------------------------------------------------------------------


async def test_content_length_answer_and_case_insensitive_headers(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    server = await scripted(answer(OK_JSON, "X-Request-Id: req_up"))
    client = make_client(server.url)
    response = await client.request("POST", "/chat/completions?x=1",
                                    {"Content-Type": "application/json"}, b"{}")
    assert (response.status, response.content_type) == (200, "application/json")
    assert response.headers["x-request-id"] == response.headers["X-REQUEST-ID"] == "req_up"
    assert await response.read() == OK_JSON
    sent = server.requests[0]
    assert sent.startswith(b"POST /v1/chat/completions?x=1 HTTP/1.1\r\n")
    assert b"\r\nContent-Length: 2\r\n" in sent and sent.endswith(b"\r\n\r\n{}")


async def test_chunked_answer_with_extensions_and_trailers(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    body = chunked(b"data: 1\n\n", b"data: 2\n\n", trailer=b"X-Trailer: t\r\n")
    body = body.replace(b"9\r\ndata: 1", b"9;ext=1\r\ndata: 1")
    server = await scripted(body, answer(b"{}"))
    client = make_client(server.url)
    assert await _get(client) == b"data: 1\n\ndata: 2\n\n"
    assert await _get(client) == b"{}"
    assert server.accepted == 1  # the chunked answer ended cleanly: connection reused


async def test_read_until_close_answer(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    server = await scripted(hang_up(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall"))
    client = make_client(server.url)
    assert await _get(client) == b"all"
    assert client.idle == 0


async def test_interim_1xx_answers_are_skipped(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    server = await scripted(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"{}"))
    assert await _get(make_client(server.url)) == b"{}"


async def test_gzip_is_decoded_and_unknown_codings_are_refused(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    server = await scripted(answer(gzip.compress(OK_JSON), "Content-Encoding: gzip"),
                            answer(b"xx", "Content-Encoding: br"))
    client = make_client(server.url)
    assert await _get(client) == OK_JSON
    assert b"\r\nAccept-Encoding: gzip, deflate\r\n" in server.requests[0]
    with pytest.raises(http1.RemoteProtocolError, match="Content-Encoding 'br'"):
        await _get(client)


async def test_a_stream_arrives_chunk_by_chunk(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    go_on = asyncio.Event()

    async def stream(writer: asyncio.StreamWriter) -> None:
        writer.write(chunked(b"data: 1\n\n")[: -len(b"0\r\n\r\n")])
        await go_on.wait()  # the client must have the first event before the rest exists
        writer.write(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")

    server = await scripted(stream)
    client = make_client(server.url)
    response = await client.request("POST", "/chat/completions", {}, b"{}")
    assert await response.readany() == b"data: 1\n\n"
    go_on.set()
    assert await response.readany() == b"data: 2\n\n"
    assert await response.readany() == b""
    assert client.idle == 1


async def test_a_reader_that_falls_behind_pauses_the_connection_until_it_reads(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    piece = b"data: " + b"x" * 16_378 + b"\n\n"  # 16 KiB events
    events = 64  # 1 MiB in all, four times the high-water mark
    done = asyncio.Event()

    async def flood(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % (len(piece) * events))
        for _ in range(events):
            writer.write(piece)
            await writer.drain()  # blocks once the client stops reading
        done.set()

    server = await scripted(flood)
    client = make_client(server.url)
    response = await client.request("GET", "/stream", {}, None)
    (conn,) = client.connections
    assert conn.transport is not None
    # Nobody reads: what arrives piles up to the mark, then the socket is left alone (the
    # rest waits in the kernel's buffers, or the upstream's drain() blocks).
    await _until(lambda: not conn.transport.is_reading())  # type: ignore[union-attr]
    buffered = response._size
    assert http1.HIGH_WATER < buffered < http1.HIGH_WATER + len(piece) * 8
    for _ in range(20):  # the loop runs; nothing more is taken from the socket
        await asyncio.sleep(0)
    assert response._size == buffered
    received = 0
    while chunk := await response.readany():
        received += len(chunk)
    assert received == len(piece) * events and done.is_set()
    assert conn.transport.is_reading() and client.idle == 1


# ---- keep-alive and stale connections -------------------------------------------------


async def test_one_connection_serves_sequential_requests(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    server = await scripted(*[answer(b"%d" % i) for i in range(3)])
    client = make_client(server.url)
    assert [await _get(client) for _ in range(3)] == [b"0", b"1", b"2"]
    assert (server.accepted, client.idle, len(client.connections)) == (1, 1, 1)


async def test_connection_close_answer_is_not_pooled(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    server = await scripted(answer(b"a", "Connection: close"), answer(b"b"))
    client = make_client(server.url)
    assert await _get(client) == b"a"
    assert client.idle == 0
    assert await _get(client) == b"b"
    assert server.accepted == 2


async def test_idle_connection_closed_by_upstream_is_not_reused(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    server = await scripted(hang_up(answer(b"first")), answer(b"second"))
    client = make_client(server.url)
    assert await _get(client) == b"first"
    await _until(lambda: not client.connections)  # the client saw the upstream's EOF
    response = await client.request("POST", "/chat/completions", {}, b"{}")
    assert await response.read() == b"second"
    assert server.accepted == 2


@pytest.mark.parametrize(("method", "headers", "retried"), [
    ("GET", {}, True),
    ("POST", {"Idempotency-Key": "k1"}, True),
    ("POST", {}, False),  # may already have run upstream: never sent twice
])  # fmt: skip
async def test_reused_connection_dropped_before_an_answer(
    scripted: ServerFactory,
    make_client: Callable[..., http1.Client],
    method: str,
    headers: dict[str, str],
    retried: bool,
) -> None:
    server = await scripted(answer(b"first"), hang_up(), answer(b"again"))
    client = make_client(server.url)
    assert await _get(client) == b"first"
    if retried:
        response = await client.request(method, "/models", headers, None)
        assert await response.read() == b"again"
        assert (server.accepted, len(server.requests)) == (2, 3)
    else:
        with pytest.raises(http1.IncompleteResponse):
            await client.request(method, "/models", headers, b"{}")
        assert (server.accepted, len(server.requests)) == (1, 2)


async def test_idle_connections_expire(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    server = await scripted(answer(b"x"))
    client = make_client(server.url)
    client.keepalive_seconds = 0.05
    assert await _get(client) == b"x"
    await _until(lambda: not client.connections)
    assert client.idle == 0


# ---- malformed answers, limits, timeouts, failures --------------------------------------


@pytest.mark.parametrize("reply", [
    b"<html>not http</html>\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-Many: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" * 2000 + b"\r\n",
])  # fmt: skip
async def test_malformed_answers_raise(
    scripted: ServerFactory, make_client: Callable[..., http1.Client], reply: bytes
) -> None:
    server = await scripted(reply)
    client = make_client(server.url)
    with pytest.raises(http1.RemoteProtocolError):
        await _get(client)
    await _until(lambda: not client.connections)


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
])  # fmt: skip
async def test_truncated_bodies_raise(
    scripted: ServerFactory, make_client: Callable[..., http1.Client], reply: bytes
) -> None:
    server = await scripted(hang_up(reply))
    client = make_client(server.url)
    response = await client.request("GET", "/models", {}, None)
    with pytest.raises(http1.IncompleteResponse):
        await response.read()
    await _until(lambda: not client.connections)


async def test_connect_refused(
    make_client: Callable[..., http1.Client], unused_tcp_port: int
) -> None:
    client = make_client(f"http://127.0.0.1:{unused_tcp_port}/v1")
    with pytest.raises(http1.ConnectError):
        await _get(client)


async def test_silent_upstream_times_out_and_the_connection_is_closed(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    stalled = asyncio.Event()

    async def silent(writer: asyncio.StreamWriter) -> None:
        await stalled.wait()

    async def stall(writer: asyncio.StreamWriter) -> None:
        writer.write(chunked(b"data: 1\n\n")[: -len(b"0\r\n\r\n")])
        await stalled.wait()

    server = await scripted(silent, stall)
    client = make_client(server.url, read_timeout=0.2)
    with pytest.raises(TimeoutError):  # no head at all...
        await client.request("POST", "/chat/completions", {}, b"")
    response = await client.request("POST", "/chat/completions", {}, b"{}")
    assert await response.readany() == b"data: 1\n\n"
    with pytest.raises(TimeoutError):  # ...and silence inside the body
        await response.readany()
    await _until(lambda: not client.connections)
    stalled.set()


async def test_cancelled_request_closes_its_connection(
    scripted: ServerFactory, make_client: Callable[..., http1.Client]
) -> None:
    never = asyncio.Event()

    async def stall(writer: asyncio.StreamWriter) -> None:
        await never.wait()

    server = await scripted(stall)
    client = make_client(server.url)
    task = asyncio.create_task(client.request("POST", "/chat/completions", {}, b"{}"))
    await _until(lambda: len(server.requests) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: not client.connections)
    assert client.idle == 0
    never.set()


def test_header_injection_is_refused() -> None:
    async def go() -> None:
        client = http1.Client("http://127.0.0.1:9/v1", 1.0, 1.0)
        with pytest.raises(ValueError, match="CR or LF"):
            client.encode_head("GET", "/models", {"X-A": "1\r\nX-B: 2"}, None)

    asyncio.run(go())


# ---- through the relay ----------------------------------------------------------------


async def _relay_post(url: str, key: str, **headers: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/chat/completions", data=orjson.dumps(CHAT),
                                headers={"Authorization": f"Bearer {key}",
                                         "Content-Type": "application/json",
                                         **headers}) as response:
            return response.status, orjson.loads(await response.read())


@pytest.mark.parametrize(("reply", "status", "code"), [
    (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", 502, "upstream_bad_response"),
    (b"garbage garbage\r\n\r\n", 502, "upstream_bad_response"),
    (hang_up(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"id\""), 502,
     "upstream_bad_response"),
    (hang_up(), 502, "upstream_bad_response"),
])  # fmt: skip
async def test_relay_maps_upstream_faults(
    scripted: ServerFactory, make_relay: RelayFactory, reply: Reply, status: int, code: str
) -> None:
    server = await scripted(reply)
    relay = await make_relay(None, upstream_url=server.url)
    got, payload = await _relay_post(relay.base_url, relay.key)
    error = payload["error"]
    assert isinstance(error, dict)
    assert (got, error["code"]) == (status, code)


async def test_relay_client_leaving_mid_stream_closes_the_upstream_connection(
    make_relay: RelayFactory, upstream: Upstream
) -> None:
    relay = await make_relay(upstream)
    client = relay.services.upstream.client
    assert client is not None
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            relay.base_url + "/chat/completions",
            data=orjson.dumps({**CHAT, "stream": True}),
            headers={**relay.headers(), "Content-Type": "application/json",
                     "x-mock-fault": "stall:2"},
        )
        received = b""
        async with asyncio.timeout(5):
            while received.count(b"\n\n") < 2:
                received += await response.content.readany()
        assert len(client.connections) == 1
        response.close()
    async with asyncio.timeout(5):
        await upstream.mock.wait_for(lambda: upstream.mock.aborted == 1)
    await _until(lambda: not client.connections)
    assert client.idle == 0


@pytest.mark.parametrize("upstream_client", ["lean", "aiohttp"])
async def test_relay_works_with_either_client(
    make_relay: RelayFactory, upstream: Upstream, upstream_client: str
) -> None:
    relay = await make_relay(upstream, upstream_client=upstream_client)
    status, payload = await _relay_post(relay.base_url, relay.key)
    assert status == 200 and payload["object"] == "chat.completion"
    async with aiohttp.ClientSession() as session:
        async with session.post(relay.base_url + "/chat/completions",
                                data=orjson.dumps({**CHAT, "stream": True}),
                                headers={**relay.headers(),
                                         "Content-Type": "application/json"}) as response:
            body = await response.read()
    assert body.endswith(b"data: [DONE]\n\n")
    async with aiohttp.ClientSession() as session:
        async with session.get(relay.base_url + "/models?limit=2", headers=relay.headers()) as r:
            assert r.status == 200
    assert upstream.mock.seen[-1].path == "/v1/models"


# ---- TLS -----------------------------------------------------------------------------


def _tls_material(tmp: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA (written to a file clients can trust) and a server context holding a
    certificate it issued for localhost."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
              signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orca test CA")])
    ca_cert = issue("orca test CA", ca_key, ca_name, ca_key, ca=True)
    leaf = issue("localhost", leaf_key, ca_name, ca_key, ca=False)
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "leaf.pem", tmp / "leaf.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return ca_file, server


async def test_https_upstream_is_verified_and_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: ServerFactory
) -> None:
    ca_file, server_context = _tls_material(tmp_path)
    script = await scripted(answer(OK_JSON), answer(OK_JSON))
    assert script.server is not None
    script.server.close()  # serve the same script over TLS instead
    await script.server.wait_closed()
    script.server = await asyncio.start_server(
        script.handle, "127.0.0.1", 0, ssl=server_context)
    port = script.server.sockets[0].getsockname()[1]

    # Trusted through SSL_CERT_FILE (read when the client builds its default context):
    # the request goes out over TLS with the host name checked against the certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    client = http1.Client(f"https://localhost:{port}/v1", connect_timeout=2.0,
                          read_timeout=5.0)
    try:
        assert await _get(client) == OK_JSON
        assert script.requests[0].startswith(b"GET /v1/models HTTP/1.1\r\nHost: localhost:")
    finally:
        await client.close()

    # Not trusted (the system CAs only): the handshake fails, which is a connect error.
    monkeypatch.delenv("SSL_CERT_FILE")
    untrusting = http1.Client(f"https://localhost:{port}/v1", connect_timeout=2.0,
                              read_timeout=5.0)
    try:
        with pytest.raises(http1.ConnectError):
            await _get(untrusting)
    finally:
        await untrusting.close()
    assert len(script.requests) == 1
