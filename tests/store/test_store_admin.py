"""The console's store methods on both backends (a SQLite file, a PostgreSQL schema):
users, key and guardrail updates, audited mutations (one transaction with their audit
entry), the audit chain, the evidence feed query, sessions and login-failure counting."""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

import pytest

from relay.evidence import EvidenceEvent
from relay.proxy.access import new_relay_key
from relay.store.audit import verify_audit_chain
from relay.store.base import (
    GENESIS_HASH,
    AuditDraft,
    Conflict,
    FirewallPolicyRecord,
    GuardrailRecord,
    RelayKey,
    SessionRecord,
    Store,
    StoreError,
    Workspace,
    new_id,
    rfc3339_now,
)
from relay.store.migrations import LATEST
from relay.store.postgres import PostgresStore
from relay.store.sqlite import SQLiteStore
from tests.store.conftest import AnyStore, raw_rows


def _draft(ws: str, action: str, target: str, **kw: Any) -> AuditDraft:
    return AuditDraft(ws, "user:usr_1", action, target, **kw)


def _guardrail(ws: str, name: str = "g") -> GuardrailRecord:
    now = rfc3339_now()
    return GuardrailRecord(new_id("gr"), ws, name, "observe", [], False, "user", now, now)


def _policy(ws: str, mode: str = "shadow") -> FirewallPolicyRecord:
    now = rfc3339_now()
    return FirewallPolicyRecord(new_id("fw"), ws, "p", mode, {"schema": 1, "rules": []},
                                "user", now, now)


async def _workspace(store: AnyStore, name: str = "acme") -> Workspace:
    return await store.create_workspace(name, "paid")


async def test_sqlite_store_is_a_store_and_migrated(sqlite_store: SQLiteStore) -> None:
    store: Store = sqlite_store  # mypy checks the whole protocol here
    assert await store.schema_version() == LATEST
    conn = sqlite3.connect(sqlite_store.path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"sessions", "login_failures", "audit_log", "evidence_events_feed",
            "pack_installations"} <= tables
    conn.close()


async def test_postgres_store_is_a_store_and_migrated(postgres_store: PostgresStore) -> None:
    store: Store = postgres_store  # mypy checks the whole protocol here
    assert await store.schema_version() == LATEST
    names = await raw_rows(
        postgres_store, "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() UNION SELECT indexname FROM pg_indexes "
        "WHERE schemaname = current_schema()")
    assert {"sessions", "login_failures", "audit_log", "evidence_events_feed",
            "pack_installations", "report_files"} <= {n for (n,) in names}
    column = await raw_rows(postgres_store, "SELECT data_type FROM information_schema.columns "
                            "WHERE table_schema = current_schema() "
                            "AND table_name = 'report_files' AND column_name = 'data'")
    assert column == [("bytea",)]


async def test_get_user(store: AnyStore) -> None:
    user = await store.create_user("a@example.com", "h")
    assert await store.get_user(user.id) == user
    assert await store.get_user("usr_missing") is None


async def test_update_key_changes_only_what_is_given(store: AnyStore) -> None:
    ws = await _workspace(store)
    record, _ = new_relay_key(ws.id, "ci", 100, "day")
    await store.create_key(record)
    version = await store.state_version()
    renamed = await store.update_key(record.id, name="deploy")
    assert renamed is not None and renamed.name == "deploy"
    assert (renamed.quota_tokens, renamed.quota_period) == (100, "day")
    assert await store.state_version() == version + 1
    requota = await store.update_key(record.id, quota=(5_000, "month"),
                                            guardrail_id=("gr_x",))
    assert requota is not None
    assert (requota.quota_tokens, requota.quota_period, requota.guardrail_id) == (
        5_000, "month", "gr_x")
    assert requota.name == "deploy"
    cleared = await store.update_key(record.id, quota=(None, None), guardrail_id=(None,))
    assert cleared is not None
    assert (cleared.quota_tokens, cleared.quota_period, cleared.guardrail_id) == (
        None, None, None)
    assert await store.get_key(record.id) == cleared
    assert await store.update_key("key_missing", name="x") is None
    with pytest.raises(ValueError, match="both"):
        await store.update_key(record.id, quota=(10, None))


async def test_update_guardrail_name_and_rules(store: AnyStore) -> None:
    ws = await _workspace(store)
    first = await store.create_guardrail(_guardrail(ws.id, "one"))
    second = await store.create_guardrail(_guardrail(ws.id, "two"))
    rules = [{"id": "r1", "categories": ["secret"], "action": "block", "on": "input"}]
    version = await store.state_version()
    updated = await store.update_guardrail(first.id, name="renamed", rules=rules)
    assert updated is not None
    assert (updated.name, updated.rules, updated.mode) == ("renamed", rules, "observe")
    assert updated.updated_at >= first.updated_at
    assert await store.state_version() > version
    await store.update_guardrail(first.id, is_default=True, mode="enforce")
    await store.update_guardrail(second.id, is_default=True)
    by_id = {g.id: g for g in await store.list_guardrails(ws.id)}
    assert not by_id[first.id].is_default and by_id[first.id].mode == "enforce"
    assert by_id[second.id].is_default
    assert await store.update_guardrail("gr_missing", name="x") is None


# ---- audited mutations --------------------------------------------------------------------


async def test_every_audited_mutation_appends_its_entry(store: AnyStore) -> None:
    ws = await _workspace(store)
    s = store
    key, _ = new_relay_key(ws.id, "ci")

    def name_of(result: Any) -> dict[str, Any]:
        return {"name": result.name}

    await s.create_key(key, audit=_draft(ws.id, "key.create", key.id, after=name_of))
    await s.update_key(key.id, name="ci2",
                       audit=_draft(ws.id, "key.update", key.id, before={"name": "ci"},
                                    after=name_of))
    await s.revoke_key(key.id, audit=_draft(ws.id, "key.revoke", key.id))
    g = _guardrail(ws.id)
    await s.create_guardrail(g, audit=_draft(ws.id, "guardrail.create", g.id, after=name_of))
    await s.update_guardrail(g.id, mode="enforce",
                             audit=_draft(ws.id, "guardrail.update", g.id, after=name_of))
    p = _policy(ws.id)
    await s.create_firewall_policy(p, audit=_draft(ws.id, "firewall.create", p.id))
    await s.update_firewall_policy(p.id, name="q",
                                   audit=_draft(ws.id, "firewall.update", p.id, after=name_of))
    entries = await s.list_audit(ws.id)
    assert [e["action"] for e in entries] == [
        "firewall.update", "firewall.create", "guardrail.update", "guardrail.create",
        "key.revoke", "key.update", "key.create"]
    assert [e["seq"] for e in entries] == [7, 6, 5, 4, 3, 2, 1]
    update = entries[5]
    assert update["before"] == {"name": "ci"} and update["after"] == {"name": "ci2"}
    assert update["actor"] == "user:usr_1" and update["target"] == key.id
    assert entries[4]["after"] is None and entries[0]["after"] == {"name": "q"}
    assert set(entries[0]) == {"workspace_id", "seq", "at", "actor", "action", "target",
                               "before", "after", "prev_hash", "hash"}
    assert verify_audit_chain(await s.audit_chain(ws.id)) == []


async def test_a_failing_mutation_writes_no_audit_entry(store: AnyStore) -> None:
    ws = await _workspace(store)
    key, _ = new_relay_key(ws.id, "ci")
    await store.create_key(key)
    duplicate = RelayKey(new_id("key"), ws.id, "dup", key.key_hash, "sk-orca-x", rfc3339_now())
    with pytest.raises(Conflict):
        await store.create_key(duplicate, audit=_draft(ws.id, "key.create", "k"))
    with pytest.raises(StoreError):  # CHECK (mode IN ('shadow', 'enforce'))
        await store.create_firewall_policy(
            _policy(ws.id, "block"), audit=_draft(ws.id, "firewall.create", "fw"))
    assert await store.list_audit(ws.id) == []


async def test_nothing_found_writes_no_audit_entry(store: AnyStore) -> None:
    ws = await _workspace(store)
    draft = _draft(ws.id, "key.revoke", "key_missing", after=lambda r: {"revoked": True})
    assert await store.revoke_key("key_missing", audit=draft) is None
    assert await store.update_key("key_missing", name="x", audit=draft) is None
    assert await store.update_guardrail("gr_missing", mode="enforce", audit=draft) is None
    assert await store.update_firewall_policy("fw_missing", mode="enforce",
                                                     audit=draft) is None
    assert await store.audit_chain() == []


async def test_an_audit_entry_that_cannot_be_written_undoes_the_change(
    store: AnyStore,
) -> None:
    ws = await _workspace(store)
    key, _ = new_relay_key(ws.id, "ci")
    version = await store.state_version()

    def broken(result: Any) -> dict[str, Any]:
        raise RuntimeError("after-state failed")

    with pytest.raises(RuntimeError):
        await store.create_key(key, audit=_draft(ws.id, "key.create", key.id,
                                                        after=broken))
    with pytest.raises(ValueError, match="audit action"):
        await store.create_key(key, audit=_draft(ws.id, "key.explode", key.id))
    with pytest.raises(Conflict):  # the audit row's workspace must exist
        await store.create_key(key, audit=_draft("ws_missing", "key.create", key.id))
    assert await store.get_key(key.id) is None
    assert await store.state_version() == version
    assert await store.audit_chain() == []


# ---- the audit chain ----------------------------------------------------------------------


async def test_the_chain_is_gapless_per_workspace_and_verifies(
    store: AnyStore,
) -> None:
    a = await _workspace(store, "a")
    b = await _workspace(store, "b")
    first = await store.append_audit(_draft(a.id, "session.login", "usr_1"))
    assert first["seq"] == 1 and first["prev_hash"] == GENESIS_HASH
    for i in range(5):
        await store.append_audit(_draft(a.id, "report.generate", f"rep_{i}"))
        await store.append_audit(_draft(b.id, "share.create", f"sh_{i}"))
    chain_a = await store.audit_chain(a.id)
    chain_b = await store.audit_chain(b.id)
    assert [e["seq"] for e in chain_a] == list(range(1, 7))
    assert [e["seq"] for e in chain_b] == list(range(1, 6))
    assert chain_a[0] == first
    assert chain_b[0]["prev_hash"] == GENESIS_HASH
    for prev, entry in itertools.pairwise(chain_a):
        assert entry["prev_hash"] == prev["hash"]
    everything = await store.audit_chain()
    assert len(everything) == 11 and verify_audit_chain(everything) == []
    page = await store.list_audit(a.id, limit=2)
    assert [e["seq"] for e in page] == [6, 5]
    older = await store.list_audit(a.id, before_seq=page[-1]["seq"], limit=10)
    assert [e["seq"] for e in older] == [4, 3, 2, 1]
    assert older[-1] == first


async def test_append_audit_calls_after_with_no_result(store: AnyStore) -> None:
    ws = await _workspace(store)
    entry = await store.append_audit(
        _draft(ws.id, "session.login", "usr_1", before=None,
               after=lambda result: {"result": result, "method": "password"}))
    assert entry["after"] == {"result": None, "method": "password"}


# ---- the evidence feed --------------------------------------------------------------------


def _event(ws: str, at: str, plane: str = "guardrail", **fields: Any) -> EvidenceEvent:
    return EvidenceEvent(ws, plane, fields.pop("request_id", "req_1"), fields.pop("key_id", None),
                         fields, at=at)


async def _feed(store: AnyStore, ws: str) -> None:
    events = [
        _event(ws, f"2026-11-23T10:00:0{i}.000000Z", request_id=f"req_{i % 2}",
               verdict="block" if i % 3 == 0 else "allow", detector="email",
               would_have=i % 2 == 0, outcome=None)
        for i in range(10)
    ]
    events.append(_event(ws, "2026-11-23T10:00:10.000000Z", plane="firewall",
                         verdict="block"))
    await store.append_events(events)


async def test_query_events_newest_first_with_pages(store: AnyStore) -> None:
    ws = await _workspace(store)
    await _feed(store, ws.id)
    page = await store.query_events(ws.id, "guardrail", limit=4)
    assert [e["seq"] for e in page] == [10, 9, 8, 7]
    assert page == list(reversed(await store.list_events(ws.id, "guardrail",
                                                                after_seq=6)))
    assert {"prev_hash", "hash", "verdict", "at"} <= set(page[0])
    rest = await store.query_events(ws.id, "guardrail", before_seq=7, limit=100)
    assert [e["seq"] for e in rest] == [6, 5, 4, 3, 2, 1]
    firewall = await store.query_events(ws.id, "firewall")
    assert [e["seq"] for e in firewall] == [11]
    assert await store.query_events("ws_other", "guardrail") == []


async def test_query_events_filters_and_time_window(store: AnyStore) -> None:
    ws = await _workspace(store)
    await _feed(store, ws.id)

    async def seqs(**kw: Any) -> list[int]:
        return [e["seq"] for e in await store.query_events(ws.id, "guardrail", **kw)]

    assert await seqs(filters={"verdict": "block"}) == [10, 7, 4, 1]
    assert await seqs(filters={"verdict": "block", "request_id": "req_1"}) == [10, 4]
    assert await seqs(filters={"detector": "phone"}) == []
    assert await seqs(filters={"outcome": "None"}) == []  # null is not text
    assert await seqs(since="2026-11-23T10:00:03.000000Z",
                      until="2026-11-23T10:00:06.000000Z") == [6, 5, 4]
    # other RFC 3339 spellings of the same moments select the same events
    assert await seqs(since="2026-11-23T10:00:03Z", until="2026-11-23T11:00:06+01:00") == [
        6, 5, 4]
    assert await seqs(since="2026-11-23T10:00:03Z", filters={"verdict": "block"},
                      before_seq=10) == [7, 4]
    for bad in ({"body": "x"}, {"would_have": "1"}, {"verdict') OR 1=1 --": "x"}):
        with pytest.raises(ValueError, match="cannot filter"):
            await seqs(filters=bad)
    with pytest.raises(ValueError):
        await seqs(since="yesterday")


async def test_query_events_booleans_do_not_match_text(store: AnyStore) -> None:
    ws = await _workspace(store)
    await store.append_events([
        _event(ws.id, rfc3339_now(), verdict=True, mode="observe"),
        _event(ws.id, rfc3339_now(), verdict="true", mode=1),
    ])
    async def seqs(filters: dict[str, str]) -> list[int]:
        return [e["seq"] for e in await store.query_events(
            ws.id, "guardrail", filters=filters)]

    assert await seqs({"verdict": "true"}) == [2]  # the text, not the boolean
    assert await seqs({"verdict": "1"}) == []
    assert await seqs({"verdict": "True"}) == []
    assert await seqs({"mode": "1"}) == []  # numbers are not text either
    assert await seqs({"mode": "observe"}) == [1]


async def test_query_events_matches_any_text_exactly(store: AnyStore) -> None:
    ws = await _workspace(store)
    odd = ['say "hi"\\n', "ünïcödé ✓", "", "tab\there", "\u2028", "back\\u0000slash"]
    await store.append_events([_event(ws.id, rfc3339_now(), verdict=v, mode="m",
                                      guardrail_id="gr_1", outcome="allowed") for v in odd])
    for seq, value in enumerate(odd, 1):
        found = await store.query_events(ws.id, "guardrail", filters={"verdict": value})
        assert [(e["seq"], e["verdict"]) for e in found] == [(seq, value)]
    # An event with a NUL in a field (PostgreSQL's JSON cannot unescape it) fails no query.
    await store.append_events([_event(ws.id, rfc3339_now(), verdict="nul\x00", mode="m",
                                      guardrail_id="gr_1", outcome="allowed")])
    everything = await store.query_events(ws.id, "guardrail", filters={"mode": "m"})
    assert len(everything) == len(odd) + 1 and everything[0]["verdict"] == "nul\x00"
    counts = await store.count_control_events(ws.id, "guardrail", ("guardrail_id", "gr_1"),
                                              "2000-01-01T00:00:00Z")
    assert counts == [(None, False, "allowed", len(odd) + 1)]


# ---- sessions and login throttling -----------------------------------------------------


async def test_session_lifecycle(store: AnyStore) -> None:
    user = await store.create_user("a@example.com", "h")
    now = "2026-11-23T10:00:00.000000Z"
    record = SessionRecord(new_id("ses"), user.id, "ab" * 32, now,
                           "2026-11-24T10:00:00.000000Z", now)
    assert await store.create_session(record) == record
    assert await store.get_session("ab" * 32) == record
    assert await store.get_session("cd" * 32) is None
    await store.touch_session(record.id, "2026-11-23T10:05:00.000000Z")
    touched = await store.get_session("ab" * 32)
    assert touched is not None and touched.last_seen_at == "2026-11-23T10:05:00.000000Z"
    await store.revoke_session(record.id, "2026-11-23T10:06:00.000000Z")
    await store.revoke_session(record.id, "2026-11-23T10:07:00.000000Z")  # no-op
    revoked = await store.get_session("ab" * 32)
    assert revoked is not None and revoked.revoked_at == "2026-11-23T10:06:00.000000Z"
    with pytest.raises(Conflict):  # the token hash is unique
        await store.create_session(SessionRecord(
            new_id("ses"), user.id, "ab" * 32, now, now, now))
    with pytest.raises(Conflict):  # and the user must exist
        await store.create_session(SessionRecord(
            new_id("ses"), "usr_missing", "ef" * 32, now, now, now))


async def test_login_failures_are_counted_by_email_and_address(
    store: AnyStore,
) -> None:
    s = store
    for minute, email, address in [(0, "a@x.com", "10.0.0.1"), (5, "a@x.com", "10.0.0.2"),
                                   (10, "b@x.com", "10.0.0.1"), (15, "a@x.com", "10.0.0.1")]:
        await s.add_login_failure(email, address, f"2026-11-23T10:{minute:02d}:00.000000Z")
    assert await s.count_login_failures("a@x.com", "10.0.0.1",
                                        "2026-11-23T10:00:00.000000Z") == (3, 3)
    assert await s.count_login_failures("a@x.com", "10.0.0.1", "2026-11-23T10:05:00Z") == (2, 2)
    assert await s.count_login_failures("b@x.com", "10.0.0.2", "2026-11-23T10:06:00Z") == (1, 0)
    assert await s.count_login_failures("c@x.com", "10.0.0.9", "2026-11-23T00:00:00Z") == (0, 0)
    assert await s.count_login_failures("a@x.com", "10.0.0.1", "2026-11-23T10:16:00Z") == (0, 0)


async def test_login_failures_older_than_a_day_are_pruned(store: AnyStore) -> None:
    await store.add_login_failure("a@x.com", "10.0.0.1", "2026-11-20T10:00:00Z")
    await store.add_login_failure("a@x.com", "10.0.0.1", "2026-11-22T12:00:00Z")
    await store.add_login_failure("a@x.com", "10.0.0.1", "2026-11-23T11:00:00Z")
    rows = await raw_rows(store, "SELECT at FROM login_failures ORDER BY at")
    assert rows == [("2026-11-22T12:00:00.000000Z",), ("2026-11-23T11:00:00.000000Z",)]
