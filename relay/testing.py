"""A fast OpenAI-compatible mock upstream (also `orca-relay mock-upstream`) for tests,
demos and benchmarks.

Routes: POST /v1/chat/completions (non-stream and SSE, tool calls, usage),
POST /v1/completions, POST /v1/embeddings, POST /v1/responses (non-stream and SSE),
GET /v1/models, GET /v1/models/{id}.

Behaviour is set per server (`MockConfig`) and may be overridden per request with
headers, which the relay forwards like any other client header:
  x-mock-reply: TEXT          the assistant's answer (default: echoes the last user text)
  x-mock-chunks: N            split a streamed answer into N content chunks
  x-mock-chunk-delay-ms: MS   pause between streamed chunks
  x-mock-tool-call: NAME      answer with a call to tool NAME ...
  x-mock-tool-args: JSON      ... with these arguments (default {})
  x-mock-tool-calls: JSON     answer with several calls: [{"name": N, "arguments": "..."}]
  x-mock-fault: FAULT         slow:SECONDS | status:CODE | garbage | drop:N | stall:N
    slow     wait before answering        status   an OpenAI error body with that status
    garbage  200 with a body that is not JSON (or not SSE, for streams)
    drop     stream N chunks, then cut the connection
    stall    stream N chunks, then go silent
The server records what it saw in `MockUpstream.seen` and counts requests that ended
because the caller went away (`aborted`), for tests to assert on.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from aiohttp import web

MOCK_MODELS = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")


@dataclass(frozen=True)
class MockConfig:
    reply: str | None = None
    chunks: int = 0  # 0: one chunk per word
    chunk_delay: float = 0.0
    tool_call: str | None = None
    tool_args: str = "{}"
    tool_calls: str | None = None  # JSON list of {"name", "arguments"}: several calls
    fault: str | None = None


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class MockUpstream:
    config: MockConfig = field(default_factory=MockConfig)
    seen: list[Seen] = field(default_factory=list)
    record: bool = True
    aborted: int = 0  # requests (streams included) cancelled because the caller left
    open_streams: int = 0
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until predicate() holds; each state change wakes the waiter (no polling).
        Callers bound the wait with asyncio.timeout."""
        while not predicate():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _changed(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    @web.middleware
    async def _count_aborts(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except (asyncio.CancelledError, ConnectionResetError):
            self.aborted += 1
            raise
        finally:
            self._changed()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._count_aborts])
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{model}", self.model)
        return app

    # ---- per-request behaviour -------------------------------------------------------

    def _behaviour(self, request: web.Request) -> MockConfig:
        h = request.headers
        if not any(name.startswith("x-mock-") for name in (k.lower() for k in h)):
            return self.config
        changes: dict[str, Any] = {}
        if "x-mock-reply" in h:
            changes["reply"] = h["x-mock-reply"]
        if "x-mock-chunks" in h:
            changes["chunks"] = int(h["x-mock-chunks"])
        if "x-mock-chunk-delay-ms" in h:
            changes["chunk_delay"] = float(h["x-mock-chunk-delay-ms"]) / 1000
        if "x-mock-tool-call" in h:
            changes["tool_call"] = h["x-mock-tool-call"]
        if "x-mock-tool-args" in h:
            changes["tool_args"] = h["x-mock-tool-args"]
        if "x-mock-tool-calls" in h:
            changes["tool_calls"] = h["x-mock-tool-calls"]
        if "x-mock-fault" in h:
            changes["fault"] = h["x-mock-fault"]
        return replace(self.config, **changes)

    async def _begin(self, request: web.Request) -> tuple[Any, MockConfig, web.Response | None]:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        if self.record:
            self.seen.append(Seen(request.method, request.path, dict(request.headers), body))
            self._changed()
        cfg = self._behaviour(request)
        fault, _, arg = (cfg.fault or "").partition(":")
        if fault == "slow":
            await asyncio.sleep(float(arg or 5))
        elif fault == "status":
            status = int(arg or 500)
            error = {
                "error": {
                    "message": f"mock upstream failure {status}",
                    "type": "server_error" if status >= 500 else "invalid_request_error",
                    "param": None,
                    "code": f"mock_{status}",
                }
            }
            return body, cfg, web.json_response(error, status=status)
        elif fault == "garbage" and not (isinstance(body, dict) and body.get("stream")):
            return body, cfg, web.Response(body=b"<html>not json", content_type="text/html")
        return body, cfg, None

    # ---- routes ----------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body, cfg, early = await self._begin(request)
        if early is not None:
            return early
        text = cfg.reply if cfg.reply is not None else _echo(body)
        prompt_tokens = _count_tokens(body.get("messages"))
        calls = _tool_calls(body, cfg)
        tool = calls[0][0] if calls else None
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = _chat_stream_events(body, text, calls, cfg, prompt_tokens, include_usage)
            return await self._stream(request, events, cfg)
        message: dict[str, Any] = {"role": "assistant", "content": None if tool else text}
        if calls:
            message["tool_calls"] = [_tool_call(name, args, i) for i, (name, args)
                                     in enumerate(calls)]
        completion_tokens = _words(text) if not tool else 5
        payload = {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if tool else "stop",
                }
            ],
            "usage": _usage(prompt_tokens, completion_tokens),
        }
        return _json(payload)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body, cfg, early = await self._begin(request)
        if early is not None:
            return early
        text = cfg.reply if cfg.reply is not None else "mock completion"
        prompt_tokens = _count_tokens(body.get("prompt"))
        base = {"id": "cmpl-mock", "object": "text_completion", "created": int(time.time()),
                "model": body.get("model", "gpt-4o-mini")}
        if body.get("stream"):
            events = [
                {**base, "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
                for piece in _pieces(text, cfg.chunks)
            ]
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**base, "choices": [],
                               "usage": _usage(prompt_tokens, _words(text))})
            return await self._stream(request, [orjson.dumps(e) for e in events] + [b"[DONE]"],
                                      cfg)
        return _json({**base, "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                      "usage": _usage(prompt_tokens, _words(text))})

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body, _cfg, early = await self._begin(request)
        if early is not None:
            return early
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.001 * (i + 1)] * 8}
            for i in range(len(items))
        ]
        tokens = _count_tokens(items)
        return _json({"object": "list", "data": data, "model": body.get("model"),
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def responses(self, request: web.Request) -> web.StreamResponse:
        body, cfg, early = await self._begin(request)
        if early is not None:
            return early
        text = cfg.reply if cfg.reply is not None else "mock response"
        usage = {"input_tokens": _count_tokens(body.get("input")),
                 "output_tokens": _words(text)}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        output: list[dict[str, Any]] = [{"type": "message", "role": "assistant",
                                         "content": [{"type": "output_text", "text": text}]}]
        output += [{"type": "function_call", "id": f"fc_{i}", "call_id": f"call_mock_{i}",
                    "name": name, "arguments": arguments}
                   for i, (name, arguments) in enumerate(_tool_calls(body, cfg))]
        done = {"id": "resp_mock", "object": "response", "status": "completed",
                "model": body.get("model"), "output_text": text, "output": output,
                "usage": usage}
        if body.get("stream"):
            events = [orjson.dumps({"type": "response.created",
                                    "response": {**done, "status": "in_progress",
                                                 "usage": None}})]
            events += [orjson.dumps({"type": "response.output_text.delta", "delta": piece})
                       for piece in _pieces(text, cfg.chunks)]
            events.append(orjson.dumps({"type": "response.completed", "response": done}))
            return await self._stream(request, events, cfg)
        return _json(done)

    async def models(self, request: web.Request) -> web.StreamResponse:
        if self.record:
            self.seen.append(Seen(request.method, request.path, dict(request.headers), None))
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "mock"}
                for m in MOCK_MODELS]
        return _json({"object": "list", "data": data})

    async def model(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["model"]
        if name not in MOCK_MODELS:
            return web.json_response(
                {"error": {"message": f"The model '{name}' does not exist",
                           "type": "invalid_request_error", "param": "model",
                           "code": "model_not_found"}}, status=404)
        return _json({"id": name, "object": "model", "created": 0, "owned_by": "mock"})

    # ---- streaming -------------------------------------------------------------------

    async def _stream(
        self, request: web.Request, events: list[bytes], cfg: MockConfig
    ) -> web.StreamResponse:
        fault, _, arg = (cfg.fault or "").partition(":")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        self.open_streams += 1
        try:
            if fault == "garbage":
                await response.write(b"this is not an event stream\n\x00\xff")
                return response
            for index, data in enumerate(events):
                if fault in ("drop", "stall") and index == int(arg or 1):
                    if fault == "drop":
                        assert request.transport is not None
                        request.transport.abort()
                        return response
                    await asyncio.sleep(3600)
                await response.write(b"data: " + data + b"\n\n")
                if cfg.chunk_delay:
                    await asyncio.sleep(cfg.chunk_delay)
            await response.write_eof()
        finally:
            self.open_streams -= 1
        return response


def _json(payload: Any) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _count_tokens(value: Any) -> int:
    """A stand-in tokenizer: about four characters per token, at least one."""
    return max(1, len(orjson.dumps(value)) // 4)


def _echo(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return f"You said: {content}"
    return "Hello from the mock upstream."


def _tool_calls(body: dict[str, Any], cfg: MockConfig) -> list[tuple[str, str]]:
    """(name, arguments) of each call the answer makes; [] for a text answer."""
    if cfg.tool_calls:
        return [(str(c["name"]), str(c.get("arguments", "{}")))
                for c in orjson.loads(cfg.tool_calls)]
    if cfg.tool_call:
        return [(cfg.tool_call, cfg.tool_args)]
    if body.get("tools") and body.get("tool_choice") == "required":
        tool = body["tools"][0]
        return [(str(tool.get("function", {}).get("name", "tool")), cfg.tool_args)]
    return []


def _tool_call(name: str, arguments: str, index: int = 0) -> dict[str, Any]:
    return {"id": f"call_mock_{index}", "type": "function",
            "function": {"name": name, "arguments": arguments}}


def _pieces(text: str, chunks: int) -> list[str]:
    if chunks <= 0:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]
    size = max(1, -(-len(text) // chunks))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _chat_stream_events(
    body: dict[str, Any],
    text: str,
    calls: list[tuple[str, str]],
    cfg: MockConfig,
    prompt_tokens: int,
    include_usage: bool,
) -> list[bytes]:
    base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body.get("model", "gpt-4o-mini")}
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return orjson.dumps({**base, "choices": [{"index": 0, "delta": delta,
                                                  "finish_reason": finish}]})

    tool = calls[0][0] if calls else None
    events = [chunk({"role": "assistant", "content": "" if not tool else None})]
    if calls:
        for index, (name, arguments) in enumerate(calls):
            events.append(chunk({"tool_calls": [{"index": index,
                                                 **_tool_call(name, "", index)}]}))
            for piece in _pieces(arguments, cfg.chunks or 3):
                events.append(chunk({"tool_calls": [{"index": index,
                                                     "function": {"arguments": piece}}]}))
        events.append(chunk({}, "tool_calls"))
    else:
        events.extend(chunk({"content": piece}) for piece in _pieces(text, cfg.chunks))
        events.append(chunk({}, "stop"))
    if include_usage:
        usage = _usage(prompt_tokens, _words(text) if not tool else 5)
        events.append(orjson.dumps({**base, "choices": [], "usage": usage}))
    events.append(b"[DONE]")
    return events


async def run_mock_upstream(host: str, port: int, config: MockConfig) -> None:
    """Serve until SIGTERM or SIGINT (the CLI's `mock-upstream`)."""
    mock = MockUpstream(config=config, record=False)
    runner = web.AppRunner(mock.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    print(f"mock upstream on http://{host}:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
