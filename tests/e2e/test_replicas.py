"""Two `orca-relay serve` processes on one PostgreSQL: one truth for keys, quotas, packs,
reports, share links, residency and the audit chain; changes made through one replica
are enforced by the other within a second."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from relay.compliance.signing import ensure_signing_key
from tests.conftest import Upstream
from tests.e2e.test_serve import Served, ServeFactory, _until, serve
from tests.pgtools import postgres_schema_url

__all__ = ["postgres_schema_url", "serve"]  # fixtures
SECRET_PROMPT = {"model": "m", "messages": [{"role": "user",
                                             "content": "use AKIAZ7Q3KXW2M4H5PLTB"}]}
PLAIN = {"model": "m", "messages": [{"role": "user", "content": "hello there"}]}
METADATA_CALL = {"x-mock-tool-calls": orjson.dumps([{"name": "fetch", "arguments": orjson.dumps(
    {"url": "http://169.254.169.254/latest/meta-data/"}).decode()}]).decode()}


async def _chat(served: Served, key: str, body: dict[str, Any],
                headers: dict[str, str] | None = None) -> int:
    return (await _request_id(served, key, body, headers))[0]


async def _request_id(served: Served, key: str, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s, \
            s.post(served.relay_url + "/v1/chat/completions", json=body,
                   headers={"Authorization": f"Bearer {key}", **(headers or {})}) as response:
        await response.read()
        return response.status, response.headers["x-request-id"]


async def _api(http: aiohttp.ClientSession, served: Served, token: str, method: str,
               path: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, served.admin_url + path, json=body,
                            headers={"Authorization": f"Bearer {token}"}) as response:
        raw = await response.read()
        kind = response.content_type
        return response.status, orjson.loads(raw) if kind == "application/json" and raw else raw


async def test_two_replicas_one_truth(
    serve: ServeFactory, upstream: Upstream, tmp_path: Path, postgres_schema_url: str
) -> None:
    signing_key = tmp_path / "shared" / "ed25519.pem"
    ensure_signing_key(str(signing_key))
    env = {"ORCA_DATABASE_URL": postgres_schema_url, "ORCA_SIGNING_KEY_FILE": str(signing_key)}
    a = await serve(upstream, data_dir=tmp_path / "a", **env)
    b = await serve(upstream, data_dir=tmp_path / "b", **env)  # the store is bootstrapped
    password = re.search(r"password\s+(\S+)", a.stdout)
    assert password is not None and "password" not in b.stdout
    async with aiohttp.ClientSession() as http:
        async with http.post(a.admin_url + "/api/auth/login", json={
                "email": "admin@orca.local", "password": password.group(1)}) as response:
            token = (await response.json())["token"]

        # a key made through A works on B within a second; revoked through B, A refuses it
        _, key = await _api(http, a, token, "POST", "/api/keys",
                            {"name": "shared", "quota_tokens": 60, "quota_period": "day"})
        await _until(lambda: _is(b, key["key"], PLAIN, 200), seconds=1.0)

        # the quota holds across replicas: alternate until one refuses, then both do
        statuses = []
        for i in range(40):
            statuses.append(await _chat(a if i % 2 else b, key["key"], PLAIN))
            if statuses[-1] == 429:
                break
        assert statuses[-1] == 429 and statuses.count(200) <= 30
        await _until(lambda: _both(a, b, key["key"], PLAIN, 429), seconds=1.0)

        # a pack installed and taken live through B is enforced by A within a second
        status, installed = await _api(http, b, token, "POST",
                                       "/api/compliance/packs/soc2/install")
        assert status == 201
        assert await _chat(a, a.key, SECRET_PROMPT) == 200  # observe: recorded, passed
        assert await _chat(b, a.key, SECRET_PROMPT) == 200
        assert (await _api(http, b, token, "POST", "/api/compliance/packs/soc2/golive",
                           {}))[0] == 200
        await _until(lambda: _both(a, b, a.key, SECRET_PROMPT, 400), seconds=1.0)
        for served in (a, b):  # the pack's firewall policy went live on both as well
            assert await _chat(served, a.key, PLAIN, METADATA_CALL) == 400
        blocked = {served.relay_url: (await _request_id(served, a.key, SECRET_PROMPT))[1]
                   for served in (a, b)}
        assert len({rid[:20] for rid in blocked.values()}) == 2  # two processes (prefixes)

        # residency declared on A is B's; a report made on B covers both replicas' events,
        # downloads from A, and its share link opens on either
        await _api(http, a, token, "PUT", "/api/compliance/residency", {"region": "eu"})
        assert (await _api(http, b, token, "GET", "/api/compliance/residency"))[1] == {
            "region": "eu"}
        _, report = await _api(http, b, token, "POST", "/api/compliance/reports",
                               {"framework": "soc2", "format": "json"})
        status, evidence = await _api(http, a, token, "GET",
                                      f"/api/compliance/reports/{report['id']}/download")
        assert status == 200
        _, matches = await _api(http, a, token, "GET", "/api/guardrails/matches?guardrail_id="
                                f"{installed['guardrail_id']}&category=secret")
        # the blocks made by each replica are in the one feed the report is drawn from
        found = {e["request_id"]: e["seq"] for e in matches["data"]}
        assert set(blocked.values()) <= set(found)
        assert evidence["event_log"]["last_seq"] >= max(found[r] for r in blocked.values())
        _, share = await _api(http, a, token, "POST",
                              f"/api/compliance/reports/{report['id']}/share")
        async with http.get(share["url"].replace(a.admin_url, b.admin_url)) as response:
            assert response.status == 200

        # concurrent changes through both replicas stay one audit chain
        await asyncio.gather(*[
            _api(http, served, token, "POST", "/api/keys", {"name": f"k{i}"})
            for i in range(10) for served in (a, b)])
    verify = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "audit", "verify", "--json", "--database-url",
        postgres_schema_url, stdout=asyncio.subprocess.PIPE)
    out, _ = await verify.communicate()
    result = orjson.loads(out)
    assert verify.returncode == 0 and result["intact"] is True and result["entries"] >= 25
    assert await a.stop() == 0 and await b.stop() == 0


async def _is(served: Served, key: str, body: dict[str, Any], status: int) -> bool:
    return await _chat(served, key, body) == status


async def _both(a: Served, b: Served, key: str, body: dict[str, Any], status: int) -> bool:
    return all([await _chat(s, key, body) == status for s in (a, b) for _ in range(3)])


async def test_replicas_starting_together_bootstrap_once(
    serve: ServeFactory, upstream: Upstream, tmp_path: Path, postgres_schema_url: str
) -> None:
    env = {"ORCA_DATABASE_URL": postgres_schema_url,
           "ORCA_SIGNING_KEY_FILE": str(tmp_path / "shared" / "ed25519.pem")}
    started = await asyncio.gather(*(serve(upstream, data_dir=tmp_path / name, **env)
                                     for name in ("a", "b", "c")))
    assert sum("admin user" in served.stdout for served in started) == 1
    for served in started:
        assert await served.stop() == 0
