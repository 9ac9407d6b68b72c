"""`/api/openapi.json` matches the routes, and a property-based run against a live admin
listener (a real `orca-relay serve` process) finds no 5xx on any route."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.admin.app import ROUTES
from tests.admin.conftest import Console

BANNER_RE = re.compile(r"admin user\s+(\S+)\s+password\s+(\S+)")


async def test_the_document_describes_exactly_the_routes(console: Console) -> None:
    answer = await console.call("GET", "/api/openapi.json")
    assert answer.status == 200 and answer.body["openapi"].startswith("3.")
    described = {(method.upper(), path) for path, ops in answer.body["paths"].items()
                 for method in ops}
    assert described == {(r.method, r.path) for r in ROUTES}
    for path, ops in answer.body["paths"].items():
        for operation in ops.values():
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path))
            assert operation["summary"] and "default" in operation["responses"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _request(base: str, method: str, path: str, token: str | None, body: bytes | None,
             content_type: str = "application/json") -> tuple[int, bytes, str]:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get_content_type()


@pytest.fixture
def live_admin(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real serve process; (admin base URL, an admin session token)."""
    admin = _free_port()
    env = {**os.environ, "ORCA_DATA_DIR": str(tmp_path / "data"),
           "ORCA_RELAY_LISTEN": f"127.0.0.1:{_free_port()}",
           "ORCA_ADMIN_LISTEN": f"127.0.0.1:{admin}", "ORCA_UPSTREAM_URL": "http://127.0.0.1:9/v1"}
    process = subprocess.Popen([sys.executable, "-m", "relay", "serve"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{admin}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if _request(base, "GET", "/healthz", None, None)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "serve did not start"
            time.sleep(0.05)  # polling a process we do not control the start of
        assert process.stdout is not None
        banner = os.read(process.stdout.fileno(), 65536).decode()
        found = BANNER_RE.search(banner)
        assert found is not None, banner
        email, password = found.groups()
        status, raw, _ = _request(base, "POST", "/api/auth/login", None,
                               json.dumps({"email": email, "password": password}).encode())
        assert status == 200, raw
        yield base, json.loads(raw)["token"]
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12)


def _bodies(route: Any) -> st.SearchStrategy[bytes | None]:
    names = list((route.body or {}).get("properties", {})) or ["x"]
    shaped = st.dictionaries(st.sampled_from(names), JSON, max_size=len(names))
    return st.one_of(
        st.none(),
        shaped.map(lambda d: json.dumps(d).encode()),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=40))


def test_no_input_makes_any_route_fail_with_5xx(live_admin: tuple[str, str]) -> None:
    base, token = live_admin
    walkable = [r for r in ROUTES if r.path != "/api/auth/logout"]

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(walkable), data=st.data())
    def probe(route: Any, data: st.DataObject) -> None:
        path = route.path.replace("{id}", data.draw(st.sampled_from(
            ["key_0", "gr_x", "fw_x", "%00", "..", "x" * 300]), label="id"))
        params = data.draw(st.dictionaries(st.sampled_from([*route.query, "junk"]),
                                           st.text(max_size=20), max_size=3), label="query")
        if params:
            path += "?" + urllib.parse.urlencode(params)
        body = data.draw(_bodies(route), label="body") if route.method != "GET" else None
        authed = data.draw(st.booleans(), label="authed")
        status, raw, kind = _request(base, route.method, path, token if authed else None, body)
        assert status < 500, (route.method, path, body, raw)
        if status >= 400 or kind == "application/json":  # errors are always JSON
            assert kind == "application/json" and isinstance(json.loads(raw), dict)

    probe()
