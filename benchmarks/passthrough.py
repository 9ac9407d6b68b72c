"""The floor: the simplest correct aiohttp pass-through proxy, for `bench_relay.py`.

One ClientSession to the upstream; each handler reads the request body, POSTs it to the
upstream base URL plus the same path below /v1, and answers with the upstream's status,
content type and body — read whole for ordinary answers, relayed chunk by chunk
(`iter_any`) for event streams. No authentication, no parsing, no metrics: whatever a
gateway does on top of this is its overhead.

    python benchmarks/passthrough.py --listen 127.0.0.1:8070 --upstream http://127.0.0.1:8090/v1
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
from aiohttp import web

# Headers that describe this hop (RFC 9110 §7.6.1) or that aiohttp sets itself.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
    }
)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)


def forward_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}


async def proxy(request: web.Request) -> web.StreamResponse:
    session = request.app[SESSION]
    url = request.app[UPSTREAM] + "/" + request.match_info["tail"]
    if request.query_string:
        url += "?" + request.query_string
    body = await request.read()
    async with session.post(url, data=body, headers=forward_headers(request.headers)) as up:
        if up.content_type != "text/event-stream":
            data = await up.read()
            return web.Response(status=up.status, body=data, content_type=up.content_type)
        response = web.StreamResponse(status=up.status)
        response.content_type = up.content_type
        await response.prepare(request)
        async for chunk in up.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


def build_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            app[SESSION] = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/{tail:.*}", proxy)
    return app


async def serve(host: str, port: int, upstream: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(build_app(upstream), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    print(f"passthrough on http://{host}:{port}/v1 -> {upstream}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not use_uvloop:
        return None
    import uvloop

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--upstream", required=True, metavar="URL",
                        help="upstream base URL including /v1")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        sys.stderr.write(f"passthrough: --listen {args.listen!r} is not HOST:PORT\n")
        return 2
    with asyncio.Runner(loop_factory=loop_factory(args.uvloop)) as runner:
        runner.run(serve(host, int(port), args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
