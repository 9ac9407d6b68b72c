"""A database outage under traffic: a relay on its own PostgreSQL server (started and
stopped here) keeps enforcing from its cached controls, spools evidence to local disk,
says so on /readyz, and replays the spool in order when the server returns."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Upstream
from tests.e2e.test_serve import ServeFactory, _until, serve

__all__ = ["serve"]  # a fixture
BIN = Path("/usr/lib/postgresql/15/bin")
EMAIL_PROMPT = {"model": "m", "messages": [{"role": "user", "content": "mail ann@example.org"}]}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A throw-away PostgreSQL cluster this test owns (so it may stop and start it)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="orca-pg-"))
        self.port = _port()
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(BIN / "initdb", "-D", str(self.dir / "data"), "-A", "trust",
                          "-U", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._as_postgres(BIN / "pg_ctl", "-D", str(self.dir / "data"), "-w", "-l",
                          str(self.dir / "log"), "-o",
                          f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                          "start")

    def stop(self) -> None:
        self._as_postgres(BIN / "pg_ctl", "-D", str(self.dir / "data"), "-w", "-m", "fast",
                          "stop")

    @staticmethod
    def _as_postgres(*argv: Any) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *map(str, argv)], check=True,
                       capture_output=True, timeout=60)


@pytest.fixture
def own_postgres() -> Iterator[Server]:
    if os.geteuid() != 0 or not (BIN / "pg_ctl").exists() or shutil.which("runuser") is None:
        pytest.skip("needs root, runuser and PostgreSQL 15's binaries to run a server of "
                    "its own (the shared one must not be stopped)")
    server = Server()
    server.start()
    try:
        yield server
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(BIN / "pg_ctl"), "-D",
                        str(server.dir / "data"), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(server.dir, ignore_errors=True)


async def test_an_outage_spools_evidence_and_replays_it_in_order(
    serve: ServeFactory, upstream: Upstream, tmp_path: Path, own_postgres: Server
) -> None:
    served = await serve(upstream, data_dir=tmp_path / "data",
                         ORCA_DATABASE_URL=own_postgres.url)
    async with aiohttp.ClientSession() as http:
        token = await _login(http, served)
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(served.admin_url + "/api/guardrails", headers=auth, json={
                "name": "mask mail", "mode": "enforce", "is_default": True,
                "rules": [{"id": "mail", "detectors": ["email_address"], "action": "mask",
                           "on": "input"}]}) as response:
            assert response.status == 201
        await _until(lambda: _masked(http, served), seconds=2.0)
        before = 2
        for _ in range(before - 1):
            assert await _masked(http, served)

        await asyncio.to_thread(own_postgres.stop)
        during = 5
        for _ in range(during):  # still answered, still masked: enforced from the cache
            assert await _masked(http, served)
        async with http.get(served.admin_url + "/readyz") as response:
            ready = await response.json()
        assert response.status == 200 and ready["status"] == "degraded"
        assert ready["store"] == "down" and ready["spooled_events"] == during

        await asyncio.to_thread(own_postgres.start)
        await _until(lambda: _ready(http, served), seconds=15.0)
        async with http.get(served.admin_url + "/api/guardrails/matches?limit=100",
                            headers=auth) as response:
            events = (await response.json())["data"][::-1]  # oldest first
    assert len(events) == before + during
    assert [e["seq"] for e in events] == list(range(1, before + during + 1))
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(events))
    assert all(e["outcome"] == "masked" for e in events)
    assert await served.stop() == 0


async def _login(http: aiohttp.ClientSession, served: Any) -> str:
    password = re.search(r"password\s+(\S+)", served.stdout)
    assert password is not None
    async with http.post(served.admin_url + "/api/auth/login", json={
            "email": "admin@orca.local", "password": password.group(1)}) as response:
        return str((await response.json())["token"])


async def _masked(http: aiohttp.ClientSession, served: Any) -> bool:
    async with http.post(served.relay_url + "/v1/chat/completions", json=EMAIL_PROMPT,
                         headers={"Authorization": f"Bearer {served.key}"}) as response:
        body = await response.json()
    content: str = body["choices"][0]["message"]["content"]
    return response.status == 200 and "[EMAIL_ADDRESS_1]" in content


async def _ready(http: aiohttp.ClientSession, served: Any) -> bool:
    async with http.get(served.admin_url + "/readyz") as response:
        status: str = (await response.json())["status"]
        return status == "ready"
