"""Real `orca-relay serve` processes: first-start bootstrap, graceful SIGTERM, --workers N
sharing the ports, the store and the metrics, and CLI changes reaching every worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import Upstream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
KEY_RE = re.compile(r"relay key\s+(sk-orca-[A-Za-z0-9_-]+)\s+\(id (key_[0-9a-f]+)\)")
WS_RE = re.compile(r"workspace\s+(ws_[0-9a-f]+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    process: asyncio.subprocess.Process
    relay_url: str
    admin_url: str
    stdout: str
    statuses: list[int] = field(default_factory=list)  # of chats sent on fresh connections
    stderr_lines: list[str] = field(default_factory=list)
    _stderr_task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        match = KEY_RE.search(self.stdout)
        assert match, self.stdout
        return match.group(1)

    @property
    def workspace(self) -> str:
        match = WS_RE.search(self.stdout)
        assert match, self.stdout
        return match.group(1)

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await self.process.wait()
        if self._stderr_task is not None:
            await self._stderr_task
        return code


async def _drain(stream: asyncio.StreamReader, into: list[str]) -> None:
    async for line in stream:
        into.append(line.decode(errors="replace"))


async def _wait_healthy(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(20):
        while process.returncode is None:
            try:
                async with session.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)  # polling a process we do not control the start of
    raise AssertionError(f"relay exited with {process.returncode} before it was healthy")


ServeFactory = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[ServeFactory]:
    started: list[Served] = []

    async def go(upstream: Upstream, *args: str, data_dir: Path | None = None,
                 **env: str) -> Served:
        relay_port, admin_port = free_port(), free_port()
        environment = {
            **os.environ,
            "ORCA_DATA_DIR": str(data_dir or tmp_path / "data"),
            "ORCA_UPSTREAM_URL": upstream.url,
            "ORCA_UPSTREAM_API_KEY": "sk-provider-e2e",
            "ORCA_RELAY_LISTEN": f"127.0.0.1:{relay_port}",
            "ORCA_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
            "ORCA_STATE_REFRESH_SECONDS": "0.2",
            **env,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", "serve", *args,
            env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: teardown can end the workers too
        )
        served = Served(process, f"http://127.0.0.1:{relay_port}",
                        f"http://127.0.0.1:{admin_port}", "")
        assert process.stderr is not None and process.stdout is not None
        served._stderr_task = asyncio.create_task(_drain(process.stderr, served.stderr_lines))
        started.append(served)
        await _wait_healthy(served.relay_url, process)
        await _wait_healthy(served.admin_url, process)
        # The credentials block is printed before the listeners open; it is complete now.
        served.stdout = (await _read_available(process.stdout)).decode()
        return served

    yield go
    for served in reversed(started):
        if served.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(served.process.pid, signal.SIGKILL)
            await served.process.wait()
        if served._stderr_task is not None:
            await served._stderr_task


async def _read_available(stream: asyncio.StreamReader) -> bytes:
    data = b""
    while True:
        try:
            chunk = await asyncio.wait_for(stream.read(65536), 0.3)
        except TimeoutError:
            return data
        if not chunk:
            return data
        data += chunk


async def _chat(session: aiohttp.ClientSession, served: Served, key: str,
                **headers: str) -> int:
    async with session.post(
        served.relay_url + "/v1/chat/completions", data=orjson.dumps(CHAT),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                 **headers},
    ) as response:
        await response.read()
        return response.status


async def _cli(*args: str, data_dir: Path) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", *args, "--data-dir", str(data_dir), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, object] = orjson.loads(out)
    return result


async def test_first_start_bootstraps_once_and_keeps_secrets_out_of_logs(
    serve: ServeFactory, upstream: Upstream, tmp_path: Path
) -> None:
    served = await serve(upstream)
    assert "first start" in served.stdout and "admin@orca.local" in served.stdout
    password = re.search(r"password\s+(\S+)", served.stdout)
    assert password is not None
    async with aiohttp.ClientSession() as session:
        assert await _chat(session, served, served.key) == 200
    assert await served.stop() == 0
    again = await serve(upstream)
    assert "first start" not in again.stdout and "sk-orca-" not in again.stdout
    async with aiohttp.ClientSession() as session:
        assert await _chat(session, again, served.key) == 200
        assert await _chat(session, again, served.key + "x") == 401
    assert await again.stop() == 0
    logs = "".join(served.stderr_lines + again.stderr_lines)
    assert "relay on" in logs
    assert served.key not in logs and password.group(1) not in logs
    assert "sk-provider-e2e" not in logs


async def test_sigterm_lets_an_in_flight_stream_finish(
    serve: ServeFactory, upstream: Upstream
) -> None:
    served = await serve(upstream)
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            served.relay_url + "/v1/chat/completions",
            data=orjson.dumps({**CHAT, "stream": True}),
            headers={"Authorization": f"Bearer {served.key}", "Content-Type": "application/json",
                     "x-mock-chunks": "8", "x-mock-chunk-delay-ms": "100"},
        )
        first = await response.content.readany()
        assert first.startswith(b"data: ")
        served.process.send_signal(signal.SIGTERM)
        rest = await response.content.read()
    body = first + rest
    assert body.endswith(b"data: [DONE]\n\n")
    text = "".join(
        orjson.loads(e[6:])["choices"][0]["delta"].get("content") or ""
        for e in body.split(b"\n\n") if e.startswith(b"data: {")
    )
    assert text == "You said: hello"
    assert await served.stop() == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(served.relay_url.rsplit(":", 1)[1])), 1)


async def test_sigterm_cuts_streams_at_the_grace_deadline(
    serve: ServeFactory, upstream: Upstream
) -> None:
    served = await serve(upstream, ORCA_SHUTDOWN_GRACE_SECONDS="0.5")
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            served.relay_url + "/v1/chat/completions",
            data=orjson.dumps({**CHAT, "stream": True}),
            headers={"Authorization": f"Bearer {served.key}", "Content-Type": "application/json",
                     "x-mock-fault": "stall:2"},
        )
        try:
            await response.content.readany()
            served.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                assert await served.stop() == 0
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.content.read()
        finally:
            response.close()
    async with asyncio.timeout(5):
        await upstream.mock.wait_for(lambda: upstream.mock.aborted == 1)


async def test_workers_share_port_store_and_metrics(
    serve: ServeFactory, upstream: Upstream, tmp_path: Path
) -> None:
    served = await serve(upstream, "--workers", "2")
    children = [
        p for p in os.listdir("/proc") if p.isdigit()
        and _ppid(int(p)) == served.process.pid and b"spawn" in _cmdline(int(p))
    ]
    assert len(children) == 2
    # A key made by the CLI while the relay runs works on every worker within a second.
    made = await _cli("key", "create", "--workspace", served.workspace,
                      data_dir=tmp_path / "data")
    new_key = str(made["key"])
    await _until(lambda: _all_answer(served, new_key, 200))
    statuses = [await _fresh_chat(served, new_key) for _ in range(30)]
    assert statuses == [200] * 30
    answered = served.statuses.count(200)
    # Every worker's requests, whichever worker answers the scrape (each publishes its
    # values every 0.5 s).
    await _until(lambda: _counted(served, answered))
    # Revocation by the CLI reaches every worker.
    await _cli("key", "revoke", str(made["id"]), data_dir=tmp_path / "data")
    await _until(lambda: _all_answer(served, new_key, 401))
    assert await served.stop() == 0


async def _counted(served: Served, expected: int) -> bool:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async with s.get(served.admin_url + "/metrics") as response:
            text = await response.text()
    total = sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith('orca_relay_requests_total{route="chat_completions",status="200"}')
    )
    return total == expected


async def _fresh_chat(served: Served, key: str) -> int:
    # A new connection each time, so SO_REUSEPORT spreads requests over the workers.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        status = await _chat(s, served, key)
    served.statuses.append(status)
    return status


async def _all_answer(served: Served, key: str, status: int) -> bool:
    return all([await _fresh_chat(served, key) == status for _ in range(10)])


async def _until(check: Callable[[], Awaitable[bool]], seconds: float = 2.0) -> None:
    """Retry until the check holds: the refresh interval is 0.2 s, the contract is 1 s."""
    async with asyncio.timeout(seconds):
        # Another process changes the state; there is no event to wait on across processes.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


async def test_admin_api_changes_reach_every_worker_within_a_second(
    serve: ServeFactory, upstream: Upstream
) -> None:
    served = await serve(upstream, "--workers", "2")
    password = re.search(r"password\s+(\S+)", served.stdout)
    assert password is not None
    async with aiohttp.ClientSession() as http:
        async with http.post(served.admin_url + "/api/auth/login", json={
                "email": "admin@orca.local", "password": password.group(1)}) as response:
            token = (await response.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(served.admin_url + "/api/keys", json={"name": "api"},
                             headers=auth) as response:
            made = await response.json()
        # ORCA_STATE_REFRESH_SECONDS is 0.2 here; the contract is one second.
        await _until(lambda: _all_answer(served, made["key"], 200), seconds=1.0)
        async with http.delete(served.admin_url + f"/api/keys/{made['id']}",
                               headers=auth) as response:
            assert response.status == 204
        await _until(lambda: _all_answer(served, made["key"], 401), seconds=1.0)
    assert await served.stop() == 0


async def test_go_live_reaches_every_worker_within_a_second(
    serve: ServeFactory, upstream: Upstream
) -> None:
    served = await serve(upstream, "--workers", "2")
    password = re.search(r"password\s+(\S+)", served.stdout)
    assert password is not None
    secret_prompt = {"model": "m", "messages": [
        {"role": "user", "content": "use AKIAZ7Q3KXW2M4H5PLTB"}]}

    async def all_blocked() -> bool:
        codes = []
        for _ in range(10):
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True)) as s, s.post(
                    served.relay_url + "/v1/chat/completions", json=secret_prompt,
                    headers={"Authorization": f"Bearer {served.key}"}) as response:
                codes.append(response.status)
        return codes == [400] * 10

    async with aiohttp.ClientSession() as http:
        async with http.post(served.admin_url + "/api/auth/login", json={
                "email": "admin@orca.local", "password": password.group(1)}) as response:
            auth = {"Authorization": f"Bearer {(await response.json())['token']}"}
        async with http.post(served.admin_url + "/api/compliance/packs/soc2/install",
                             headers=auth) as response:
            assert response.status == 201
        assert not await all_blocked()  # observe: the prompt passes
        async with http.post(served.admin_url + "/api/compliance/packs/soc2/golive",
                             json={}, headers=auth) as response:
            assert response.status == 200
        await _until(all_blocked, seconds=1.0)
    assert await served.stop() == 0
