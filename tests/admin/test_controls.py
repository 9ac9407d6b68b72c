"""Keys, guardrails, firewall policies, feeds and the audit trail over the admin API."""

from __future__ import annotations

from typing import Any

import openai

from relay.store.audit import verify_audit_chain
from tests.admin.conftest import Console


async def _chat(console: Console, key: str, content: str = "hi") -> Any:
    async with openai.AsyncOpenAI(base_url=console.relay.base_url, api_key=key,
                                  max_retries=0) as client:
        return await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": content}])


async def test_key_lifecycle_reaches_the_relay(console: Console) -> None:
    token = await console.admin_token()
    made = await console.call("POST", "/api/keys", token=token, json={
        "name": "ci", "quota_tokens": 1000, "quota_period": "day"})
    assert made.status == 201
    secret = made.body["key"]
    assert secret.startswith("sk-orca-") and made.body["quota_tokens"] == 1000
    await console.relay.services.access.refresh()
    await _chat(console, secret)
    shown = await console.call("GET", f"/api/keys/{made.body['id']}", token=token)
    assert "key" not in shown.body and shown.body["name"] == "ci"
    changed = await console.call("PATCH", f"/api/keys/{made.body['id']}", token=token,
                                 json={"quota_tokens": None, "quota_period": None,
                                       "name": "ci-2"})
    assert (changed.body["quota_tokens"], changed.body["name"]) == (None, "ci-2")
    gone = await console.call("DELETE", f"/api/keys/{made.body['id']}", token=token)
    assert gone.status == 204
    again = await console.call("DELETE", f"/api/keys/{made.body['id']}", token=token)
    assert (again.status, again.code) == (409, "key_revoked")
    await console.relay.services.access.refresh()
    try:
        await _chat(console, secret)
        raise AssertionError("a revoked key still worked")
    except openai.AuthenticationError as exc:
        assert exc.code == "invalid_api_key"


async def test_key_input_is_checked_field_by_field(console: Console) -> None:
    token = await console.admin_token()
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"quota_tokens": 5}, "invalid_value", "quota_tokens"),
        ({"quota_tokens": "5", "quota_period": "day"}, "invalid_type", "quota_tokens"),
        ({"quota_tokens": True, "quota_period": "day"}, "invalid_type", "quota_tokens"),
        ({"quota_tokens": 5, "quota_period": "week"}, "invalid_value", "quota_period"),
        ({"quota_tokens": -1, "quota_period": "day"}, "invalid_value", "quota_tokens"),
        ({"guardrail_id": "gr_nope"}, "invalid_value", "guardrail_id"),
        ({"name": 3}, "invalid_type", "name"),
        ({"owner": "me"}, "unknown_parameter", "owner"),
    ]
    for body, code, param in cases:
        answer = await console.call("POST", "/api/keys", token=token, json=body)
        assert (answer.status, answer.code, answer.body["error"]["param"]) == (
            400, code, param), body
    not_object = await console.call("POST", "/api/keys", token=token, json=[1])
    assert not_object.code == "invalid_body"


async def test_lists_are_paged_with_cursors(console: Console) -> None:
    token = await console.admin_token()
    for i in range(5):
        await console.call("POST", "/api/keys", token=token, json={"name": f"k{i}"})
    seen: list[str] = []
    cursor: str | None = None
    while True:
        path = "/api/keys?limit=2" + (f"&cursor={cursor}" if cursor else "")
        answer = await console.call("GET", path, token=token)
        seen += [k["id"] for k in answer.body["data"]]
        cursor = answer.body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6  # the bootstrap key and five more
    bad = await console.call("GET", "/api/keys?cursor=garbage", token=token)
    assert bad.code == "invalid_cursor"
    too_many = await console.call("GET", "/api/keys?limit=100000", token=token)
    assert too_many.code == "invalid_value"
    # a digit Python calls a digit but int() refuses (found by the property-based run)
    superscript = await console.call("GET", "/api/keys?limit=%C2%B2", token=token)
    assert (superscript.status, superscript.code) == (400, "invalid_value")


async def test_guardrails_are_validated_and_take_effect(console: Console) -> None:
    token = await console.admin_token()
    bad = await console.call("POST", "/api/guardrails", token=token, json={
        "name": "g", "rules": [{"id": "r", "detectors": ["nope"], "action": "mask"}]})
    assert (bad.status, bad.code) == (400, "invalid_value")
    assert "unknown name 'nope'" in bad.body["error"]["message"]
    made = await console.call("POST", "/api/guardrails", token=token, json={
        "name": "mask mail", "mode": "enforce", "is_default": True,
        "rules": [{"id": "m", "detectors": ["email_address"], "action": "mask"}]})
    assert made.status == 201 and made.body["source"] == "user"
    await console.relay.services.access.refresh()
    await _chat(console, console.relay.key, "mail jane.roe@example.org")
    sent = console.relay.upstream.mock.seen[-1].body if console.relay.upstream else None
    assert sent is not None and "[EMAIL_ADDRESS_1]" in sent["messages"][0]["content"]
    switched = await console.call("PATCH", f"/api/guardrails/{made.body['id']}",
                                  token=token, json={"mode": "observe"})
    assert switched.body["mode"] == "observe"
    listed = await console.call("GET", "/api/guardrails", token=token)
    assert [g["id"] for g in listed.body["data"]] == [made.body["id"]]


async def test_firewall_policies_are_validated_and_take_effect(console: Console) -> None:
    token = await console.admin_token()
    bad = await console.call("POST", "/api/firewall/policies", token=token, json={
        "name": "p", "rules": [{"id": "r", "effect": "deny", "hosts": ["10.0.0.0/33"]}]})
    assert (bad.status, bad.code, bad.body["error"]["param"]) == (
        400, "invalid_value", "rules[0].hosts[0]")
    made = await console.call("POST", "/api/firewall/policies", token=token, json={
        "name": "no shell", "mode": "enforce",
        "rules": [{"id": "no-shell", "effect": "deny", "tools": ["shell*"]}]})
    assert made.status == 201
    assert (made.body["mode"], made.body["default"], made.body["schema"]) == (
        "enforce", "allow", 1)
    await console.relay.services.access.refresh()
    async with openai.AsyncOpenAI(base_url=console.relay.base_url, api_key=console.relay.key,
                                  max_retries=0) as client:
        try:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}],
                tools=[{"type": "function", "function": {"name": "shell_exec"}}])
            raise AssertionError("the policy did not apply")
        except openai.BadRequestError as exc:
            assert exc.code == "firewall_blocked"
    events = await console.call("GET", "/api/firewall/events?verdict=deny", token=token)
    assert [e["tool"] for e in events.body["data"]] == ["shell_exec"]
    patched = await console.call("PATCH", f"/api/firewall/policies/{made.body['id']}",
                                 token=token, json={"default": "deny", "mode": "shadow"})
    assert (patched.body["default"], patched.body["mode"], len(patched.body["rules"])) == (
        "deny", "shadow", 1)


async def test_feeds_filter_and_page_newest_first(console: Console) -> None:
    token = await console.admin_token()
    await console.call("POST", "/api/guardrails", token=token, json={
        "name": "flag", "is_default": True,
        "rules": [{"id": "all", "categories": ["pii"], "action": "mask"}]})
    await console.relay.services.access.refresh()
    for i in range(3):
        await _chat(console, console.relay.key, f"write to person{i}@example.org")
    feed = await console.call("GET", "/api/guardrails/matches?detector=email_address"
                              "&limit=2", token=token)
    first = feed.body["data"]
    assert len(first) == 2 and first[0]["seq"] > first[1]["seq"]
    assert {e["would_have"] for e in first} == {True} and first[0]["mode"] == "observe"
    rest = await console.call("GET", "/api/guardrails/matches?detector=email_address"
                              f"&cursor={feed.body['next_cursor']}", token=token)
    seqs = [e["seq"] for e in first + rest.body["data"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == 6  # 3 in, 3 echoed out
    one = await console.call("GET", f"/api/guardrails/matches?request_id="
                             f"{first[0]['request_id']}", token=token)
    assert {e["request_id"] for e in one.body["data"]} == {first[0]["request_id"]}
    future = await console.call("GET", "/api/guardrails/matches?since=2999-01-01T00:00:00Z",
                                token=token)
    assert future.body["data"] == []
    naive = await console.call("GET", "/api/guardrails/matches?since=2026-01-01T00:00:00",
                               token=token)
    assert naive.code == "invalid_value"
    unknown = await console.call("GET", "/api/guardrails/matches?colour=red", token=token)
    assert unknown.code == "unknown_parameter"


async def test_every_change_is_in_the_audit_chain(console: Console) -> None:
    token = await console.admin_token()
    key = (await console.call("POST", "/api/keys", token=token, json={"name": "a"})).body
    await console.call("PATCH", f"/api/keys/{key['id']}", token=token, json={"name": "b"})
    await console.call("DELETE", f"/api/keys/{key['id']}", token=token)
    trail = await console.call("GET", "/api/audit", token=token)
    entries = trail.body["data"]
    assert [e["action"] for e in entries] == [
        "key.revoke", "key.update", "key.create", "session.login"]
    update = entries[1]
    assert (update["before"]["name"], update["after"]["name"]) == ("a", "b")
    assert update["actor"].startswith("user:") and update["target"] == key["id"]
    assert key["key"] not in str(entries)
    assert verify_audit_chain(await console.relay.services.store.audit_chain()) == []
