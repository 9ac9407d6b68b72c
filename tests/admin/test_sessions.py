"""Console sessions over real HTTP: login, cookies, expiry, throttling, CSRF, workspaces."""

from __future__ import annotations

import sqlite3

import aiohttp

from relay.admin.auth import token_hash
from tests.admin.conftest import PASSWORD, Console
from tests.conftest import RelayFactory, Upstream


async def test_login_gives_a_token_and_a_strict_http_only_cookie(console: Console) -> None:
    boot = console.relay.boot
    answer = await console.call("POST", "/api/auth/login",
                                json={"email": boot.admin_email.upper(),
                                      "password": boot.admin_password})
    assert answer.status == 200
    token = answer.body["token"]
    assert token.startswith("orca_sess_") and len(token) > 40
    assert answer.body["workspaces"] == [{"id": boot.workspace.id, "role": "admin"}]
    cookie = answer.headers["Set-Cookie"]
    assert f"orca_session={token}" in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/api" in cookie
    me = await console.call("GET", "/api/auth/me", token=token)
    assert me.body["user"]["email"] == boot.admin_email
    assert me.body["workspaces"][0]["plan"] == "paid"
    by_cookie = await console.call("GET", "/api/auth/me", cookies={"orca_session": token})
    assert by_cookie.status == 200
    # the store keeps a hash, never the token
    db = console.relay.settings.effective_database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT token_hash FROM sessions").fetchall()
    assert stored == [(token_hash(token),)]


async def test_bad_credentials_are_one_401_whoever_is_asked(console: Console) -> None:
    for email in (console.relay.boot.admin_email, "nobody@example.com"):
        answer = await console.call("POST", "/api/auth/login",
                                    json={"email": email, "password": "wrong"})
        assert (answer.status, answer.code) == (401, "invalid_credentials")
    bad = await console.call("POST", "/api/auth/login", json={"email": "x"})
    assert (bad.status, bad.code) == (400, "missing_required_parameter")
    junk = await console.call("POST", "/api/auth/login", raw=b"{not json")
    assert (junk.status, junk.code) == (400, "invalid_json")
    extra = await console.call("POST", "/api/auth/login",
                               json={"email": "a", "password": "b", "otp": 1})
    assert (extra.status, extra.code) == (400, "unknown_parameter")


async def test_ten_failures_lock_the_account_even_for_the_right_password(
    console: Console
) -> None:
    boot = console.relay.boot
    for _ in range(10):
        answer = await console.call("POST", "/api/auth/login",
                                    json={"email": boot.admin_email, "password": "nope"})
        assert answer.status == 401
    locked = await console.call("POST", "/api/auth/login", json={
        "email": boot.admin_email, "password": boot.admin_password})
    assert (locked.status, locked.code) == (429, "too_many_attempts")
    other = await console.user("ok@example.com", "member")  # other accounts still log in
    assert other.startswith("orca_sess_")


async def test_fifty_failures_from_one_address_lock_every_account(console: Console) -> None:
    await console.user("victim@example.com", "member")
    for i in range(50):
        answer = await console.call("POST", "/api/auth/login",
                                    json={"email": f"guess{i}@example.com", "password": "x"})
        assert answer.status == 401
    locked = await console.call("POST", "/api/auth/login",
                                json={"email": "victim@example.com", "password": PASSWORD})
    assert (locked.status, locked.code) == (429, "too_many_attempts")


async def test_logout_ends_the_session(console: Console) -> None:
    token = await console.admin_token()
    assert (await console.call("POST", "/api/auth/logout", token=token)).status == 204
    after = await console.call("GET", "/api/auth/me", token=token)
    assert (after.status, after.code) == (401, "unauthenticated")


async def test_expired_and_idle_sessions_are_refused(console: Console) -> None:
    db = console.relay.settings.effective_database_url.removeprefix("sqlite:///")
    for column in ("expires_at", "last_seen_at"):
        token = await console.admin_token()
        with sqlite3.connect(db) as conn:
            conn.execute(f"UPDATE sessions SET {column} = '2000-01-01T00:00:00.000000Z' "
                         "WHERE token_hash = ?", (token_hash(token),))
        answer = await console.call("GET", "/api/auth/me", token=token)
        assert (answer.status, answer.code) == (401, "unauthenticated"), column


async def test_relay_keys_and_session_tokens_stay_on_their_own_listener(
    console: Console
) -> None:
    relay = console.relay
    as_key = await console.call("GET", "/api/keys", token=relay.key)
    assert (as_key.status, as_key.code) == (401, "unauthenticated")
    token = await console.admin_token()
    async with aiohttp.ClientSession() as http, http.get(
        relay.base_url + "/models", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_api_key"
    nothing = await console.call("GET", "/api/keys")
    assert (nothing.status, nothing.code) == (401, "unauthenticated")


async def test_a_configured_console_origin_is_accepted(
    make_relay: RelayFactory, upstream: Upstream
) -> None:
    relay = await make_relay(upstream, console_origins="https://console.example")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        console = Console(relay, http)
        cookie = {"orca_session": await console.admin_token()}
        allowed = await console.call("POST", "/api/keys", json={}, cookies=cookie,
                                     headers={"Origin": "https://console.example"})
        assert allowed.status == 201
        refused = await console.call("POST", "/api/keys", json={}, cookies=cookie,
                                     headers={"Origin": "https://console.example.evil"})
        assert refused.code == "csrf_failed"


async def test_csrf_rule(console: Console) -> None:
    token = await console.admin_token()
    cookie = {"orca_session": token}
    body = {"name": "ci"}
    missing = await console.call("POST", "/api/keys", json=body, cookies=cookie)
    assert (missing.status, missing.code) == (403, "csrf_failed")
    foreign = await console.call("POST", "/api/keys", json=body, cookies=cookie,
                                 headers={"Origin": "https://evil.example"})
    assert (foreign.status, foreign.code) == (403, "csrf_failed")
    own = console.relay.admin_url
    assert (await console.call("POST", "/api/keys", json=body, cookies=cookie,
                               headers={"Origin": own})).status == 201
    assert (await console.call("GET", "/api/keys", cookies=cookie)).status == 200
    assert (await console.call("POST", "/api/keys", json=body, token=token)).status == 201


async def test_several_workspaces_need_the_header(console: Console) -> None:
    token = await console.admin_token()
    other = await console.workspace("second", "free")
    await console.relay.services.store.add_membership(
        (await console.call("GET", "/api/auth/me", token=token)).body["user"]["id"], other,
        "member")
    ambiguous = await console.call("GET", "/api/keys", token=token)
    assert (ambiguous.status, ambiguous.code) == (400, "workspace_required")
    named = await console.call("GET", "/api/keys", token=token,
                               headers={"X-Orca-Workspace": other})
    assert named.status == 200 and named.body["data"] == []
    stranger = await console.workspace("third", "paid")
    hidden = await console.call("GET", "/api/keys", token=token,
                                headers={"X-Orca-Workspace": stranger})
    assert (hidden.status, hidden.code) == (404, "workspace_not_found")
