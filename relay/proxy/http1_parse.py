"""Sans-I/O parsing of HTTP/1.1 responses for the upstream client (`http1.py`).

Rules of this file: bytes in, values out, no I/O and no awaits. `read_head` finds and
parses a response head (skipping 1xx interim answers); `Framing` then turns the body's
bytes as they arrive into decoded body bytes and says where the body ends: by
Content-Length, by chunked transfer-coding, or (neither given) at the connection's end.
Content-Encoding gzip and deflate are decoded, any other coding is refused. What the
upstream gets wrong raises RemoteProtocolError, with the part at fault in the message.
"""

from __future__ import annotations

import zlib

from multidict import CIMultiDict, CIMultiDictProxy

MAX_HEAD_BYTES = 64 * 1024  # status line and headers together
MAX_LINE_BYTES = 8190  # one header or chunk-size line (aiohttp's default)
_HEX = b"0123456789abcdefABCDEF"
LENGTH, CHUNKED, UNTIL_CLOSE = 0, 1, 2
# The chunked decoder's states besides "this many bytes left in the chunk".
_SIZE, _CRLF, _TRAILER = -1, -2, -3


class HTTPClientError(Exception):
    """Everything the upstream client raises about the upstream, apart from TimeoutError."""


class ConnectError(HTTPClientError):
    def __init__(self, strerror: str) -> None:
        super().__init__(strerror)
        self.strerror = strerror


class RemoteProtocolError(HTTPClientError):
    """The upstream's bytes are not a valid HTTP/1.1 response we can relay."""


class IncompleteResponse(HTTPClientError):
    """The connection ended before the response did."""


Head = tuple[int, str, CIMultiDictProxy[str], bool]  # status, reason, headers, is HTTP/1.1


def read_head(buf: bytes) -> tuple[Head, bytes] | None:
    """The final response head in `buf` and the bytes after it; None until it is whole."""
    while True:
        if buf[:5] != b"HTTP/"[: len(buf)]:
            raise RemoteProtocolError(f"the status line is not HTTP: {buf[:40]!r}")
        end = buf.find(b"\r\n\r\n")
        if end < 0 and len(buf) <= MAX_HEAD_BYTES:
            return None
        if end < 0 or end > MAX_HEAD_BYTES:
            raise RemoteProtocolError(f"the headers exceed {MAX_HEAD_BYTES} bytes")
        head = parse_head(buf[:end])
        buf = buf[end + 4 :]
        if head[0] >= 200:
            return head, buf
        if head[0] == 101:
            raise RemoteProtocolError("the upstream switched protocols unasked")
        # 1xx interim answers (100 Continue, 103 Early Hints) precede the real one.
        if not buf:
            return None


def parse_head(raw: bytes) -> Head:
    """Status, reason, headers and whether it is HTTP/1.1, from the bytes before CRLFCRLF."""
    lines = raw.decode("utf-8", "surrogateescape").split("\r\n")
    status_line = lines[0]
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise RemoteProtocolError(f"malformed status line {status_line[:80]!r}")
    pairs = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or len(line) > MAX_LINE_BYTES or name.strip(" \t") != name:
            raise RemoteProtocolError(f"malformed header line {line[:80]!r}")
        pairs.append((name, value.strip(" \t")))
    return int(code), reason, CIMultiDictProxy(CIMultiDict(pairs)), version == "HTTP/1.1"


class Framing:
    """Where one response body ends, and its decoding; `feed` as bytes arrive."""

    __slots__ = ("_buf", "_decoder", "keep_alive", "kind", "left")

    def __init__(self, status: int, headers: CIMultiDictProxy[str], http11: bool) -> None:
        connection = headers.get("Connection", "").lower()
        self.keep_alive = ("close" not in connection) if http11 else ("keep-alive" in connection)
        self._decoder = _decoder(headers.get("Content-Encoding"))
        self._buf = b""
        self.kind, self.left = LENGTH, 0
        te = headers.get("Transfer-Encoding")
        if status in (204, 304):
            pass
        elif te is not None:
            codings = [c.strip().lower() for c in te.split(",")]
            if codings[-1] != "chunked":
                self.kind, self.keep_alive = UNTIL_CLOSE, False
            elif any(c not in ("chunked", "identity") for c in codings[:-1]):
                raise RemoteProtocolError(f"unsupported Transfer-Encoding {te!r}")
            else:
                self.kind, self.left = CHUNKED, _SIZE
                if "Content-Length" in headers:  # RFC 9112 §6.3: never reuse this one
                    self.keep_alive = False
        elif "Content-Length" in headers:
            lengths = set(headers.getall("Content-Length"))
            value = lengths.pop().strip()
            if lengths or not value.isdigit() or not value.isascii():
                raise RemoteProtocolError("invalid Content-Length header")
            self.left = int(value)
        else:
            self.kind, self.keep_alive = UNTIL_CLOSE, False

    @property
    def empty(self) -> bool:
        return self.kind == LENGTH and self.left == 0

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """(decoded body bytes, None) while the body goes on; at its end, (the last
        decoded bytes, whatever came after the body)."""
        if self.kind == LENGTH:
            left = self.left
            if len(data) < left:
                self.left = left - len(data)
                return self._decode(data), None
            self.left = 0
            return self._last(data[:left]), data[left:]
        if self.kind == CHUNKED:
            return self._feed_chunked(self._buf + data if self._buf else data)
        return self._decode(data), None

    def end_of_connection(self) -> bytes:
        """The connection ended: the last decoded bytes of a body framed by it."""
        if self.kind != UNTIL_CLOSE:
            raise IncompleteResponse("the upstream closed the connection mid-body")
        return self._flush()

    def _feed_chunked(self, buf: bytes) -> tuple[bytes, bytes | None]:
        pos, size, out = 0, len(buf), []
        while pos < size:
            left = self.left
            if left > 0:
                take = min(left, size - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self.left = left - take or _CRLF
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if size - pos > MAX_LINE_BYTES:
                    raise RemoteProtocolError("a chunk-size line is too long")
                break
            line, pos = buf[pos:eol], eol + 2
            if left == _CRLF:
                if line:
                    raise RemoteProtocolError("a chunk does not end with CRLF")
                self.left = _SIZE
            elif left == _SIZE:
                digits = line.split(b";", 1)[0].strip(b" \t")
                if not digits or digits.translate(None, _HEX):
                    raise RemoteProtocolError(f"invalid chunk size {line[:40]!r}")
                self.left = int(digits, 16) or _TRAILER
            elif not line:  # the empty line after the last chunk and its trailers
                self._buf = b""
                return self._last(b"".join(out)), buf[pos:]
        self._buf = buf[pos:]
        return self._decode(out[0] if len(out) == 1 else b"".join(out)), None

    def _last(self, data: bytes) -> bytes:
        if self._decoder is None:
            return data
        return self._decode(data) + self._flush()

    def _decode(self, data: bytes) -> bytes:
        if self._decoder is None or not data:
            return data
        try:
            return self._decoder.decompress(data)
        except zlib.error as exc:
            raise RemoteProtocolError(f"cannot decode the body: {exc}") from None

    def _flush(self) -> bytes:
        if self._decoder is None:
            return b""
        try:
            return self._decoder.flush()
        except zlib.error as exc:
            raise RemoteProtocolError(f"cannot decode the body: {exc}") from None


def _decoder(coding: str | None) -> zlib._Decompress | None:
    if coding is None:
        return None
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise RemoteProtocolError(f"unsupported Content-Encoding {coding!r}")
