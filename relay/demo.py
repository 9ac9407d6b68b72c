"""`orca-relay demo`: the spec's walkthrough, end to end, with real HTTP on loopback.

Starts the mock upstream and the relay (both listeners, the embedded default: SQLite, a
generated signing key, a bootstrap admin) in a fresh data directory, then, as an admin
and as an app would: installs the SOC 2 pack, sends traffic that trips its controls
(observe: it passes and is recorded), reads readiness, takes the pack live, and sends
the same traffic again (now blocked). Prints each step; exit 0 when every step did what
the spec says.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import orjson
from aiohttp import web

from relay.config import load_settings
from relay.server import build_admin_app, build_relay_app, open_services, prepare_state
from relay.testing import MockUpstream

# A made-up key in AWS's format (not the documented example, which is never a finding).
FAKE_SECRET = "AKIAZ7Q3KXW2M4H5PLTB"
METADATA_CALL = orjson.dumps([{"name": "fetch", "arguments": orjson.dumps(
    {"url": "http://169.254.169.254/latest/meta-data/iam/"}).decode()}]).decode()


class DemoFailed(Exception):
    """A step did not do what the spec says; the message says which."""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _site(app: web.Application, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def run_demo(data_dir: Path, out: TextIO) -> None:
    say: Callable[[str], None] = lambda text: print(text, file=out, flush=True)  # noqa: E731
    upstream_port, relay_port, admin_port = _port(), _port(), _port()
    settings = load_settings(environ={}, overrides={
        "data_dir": str(data_dir), "upstream_url": f"http://127.0.0.1:{upstream_port}/v1",
        "relay_listen": f"127.0.0.1:{relay_port}", "admin_listen": f"127.0.0.1:{admin_port}",
        "uvloop": False})
    boot = await prepare_state(settings)
    if boot is None:
        raise DemoFailed(f"{data_dir} holds an earlier store; the demo needs a fresh one")
    say(f"1. started the mock upstream, the relay on :{relay_port} and the admin API on "
        f":{admin_port} (SQLite in {data_dir})")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(_site(MockUpstream(record=False).app(), upstream_port))
        services = await stack.enter_async_context(open_services(settings))
        await stack.enter_async_context(_site(build_relay_app(services), relay_port))
        await stack.enter_async_context(_site(build_admin_app(services), admin_port))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        walk = _Walk(http, f"http://127.0.0.1:{admin_port}/api",
                     f"http://127.0.0.1:{relay_port}/v1", boot.key_secret, say)
        await walk.run(boot.admin_email, boot.admin_password)


class _Walk:
    def __init__(self, http: aiohttp.ClientSession, api: str, relay: str, key: str,
                 say: Callable[[str], None]) -> None:
        self.http, self.api, self.relay, self.key, self.say = http, api, relay, key, say
        self.token = ""

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(method, self.api + path, json=body,
                                     headers=headers) as response:
            answer = await response.json()
            if response.status >= 400:
                raise DemoFailed(f"{method} {path} answered {response.status}: {answer}")
            return answer

    async def chat(self, content: str, headers: dict[str, str] | None = None) -> str:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
        async with self.http.post(self.relay + "/chat/completions", json=body, headers={
                "Authorization": f"Bearer {self.key}", **(headers or {})}) as response:
            answer = await response.json()
            if response.status == 200:
                return "200 passed"
            return f"{response.status} {answer['error']['code']}"

    async def traffic(self) -> tuple[str, str]:
        secret = await self.chat(f"deploy with {FAKE_SECRET}")
        egress = await self.chat("fetch the instance role",
                                 {"x-mock-tool-calls": METADATA_CALL})
        self.say(f"   prompt carrying a cloud key      → {secret}")
        self.say(f"   answer calling the metadata host → {egress}")
        return secret, egress

    async def run(self, email: str, password: str) -> None:
        self.token = (await self.admin("POST", "/auth/login",
                                       {"email": email, "password": password}))["token"]
        self.say(f"2. logged in to the admin API as {email}")
        catalog = await self.admin("GET", "/compliance/catalog")
        self.say("3. catalog: " + ", ".join(
            f"{f['id']} ({f['clauses']} clauses)" for f in catalog["frameworks"]))
        installed = await self.admin("POST", "/compliance/packs/soc2/install")
        self.say(f"4. installed soc2 in {installed['state']}: guardrail "
                 f"{installed['guardrail_id']}, firewall policy "
                 f"{installed['firewall_policy_id']}")
        # The relay re-reads controls on its own clock (every 0.5 s), like a replica would.
        await asyncio.sleep(1.0)
        self.say("5. traffic in observe (passes; recorded as would-have-blocked):")
        if await self.traffic() != ("200 passed", "200 passed"):
            raise DemoFailed("observe mode changed traffic")
        await self.readiness("6.")
        live = await self.admin("POST", "/compliance/packs/soc2/golive",
                                {"promote_default": True})
        self.say(f"7. soc2 is {live['state']}; its guardrail is the workspace default: "
                 f"{live['promoted_default']}")
        await asyncio.sleep(1.0)
        self.say("8. the same traffic, enforced:")
        if await self.traffic() != ("400 guardrail_blocked", "400 firewall_blocked"):
            raise DemoFailed("go-live did not enforce")
        await self.readiness("9.")

    async def readiness(self, step: str) -> None:
        (soc2,) = (await self.admin("GET", "/compliance/readiness"))["frameworks"]
        counts = soc2["counts"]
        # a control serving several clauses is listed under each: count it once
        controls = {(c["kind"], c["id"]): c for cl in soc2["clauses"] for c in cl["controls"]}
        would = sum(c["would_have_blocked"] for c in controls.values())
        applied = sum(c["applied"] for c in controls.values())
        gaps = [c["id"] for c in soc2["clauses"] if c["state"] == "gap"]
        self.say(f"{step} readiness: soc2 {soc2['state']} — {counts['enforcing']} enforcing, "
                 f"{counts['observe']} observe, {counts['gap']} gaps ({', '.join(gaps)}); "
                 f"would have blocked {would}, applied {applied}")


def main(data_dir: str | None, out: TextIO) -> int:
    with tempfile.TemporaryDirectory(prefix="orca-demo-") as scratch:
        target = Path(data_dir) if data_dir else Path(scratch)
        try:
            asyncio.run(run_demo(target, out))
        except DemoFailed as exc:
            print(f"demo failed: {exc}", file=out)
            return 1
    print("done: observe → readiness → go-live → enforce, as the spec walks it", file=out)
    return 0
