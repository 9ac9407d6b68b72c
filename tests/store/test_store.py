"""Both store backends (SQLite on a real file, PostgreSQL in a fresh schema): migrations,
group commit, isolation of failures, several store instances (as several worker
processes or replicas) on one database."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import pytest

from relay.accounts import BootstrapResult, bootstrap_if_empty
from relay.proxy.access import new_relay_key
from relay.store.base import (
    Conflict,
    FirewallPolicyRecord,
    Store,
    StoreError,
    UsageDelta,
    open_store,
    rfc3339,
    rfc3339_now,
    utc_now,
)
from relay.store.migrations import LATEST
from relay.store.postgres import PostgresStore
from relay.store.sqlite import SQLiteStore
from tests.store.conftest import AnyStore, raw_rows


async def test_migrations_apply_once_and_record_their_version(store_url: str) -> None:
    for _ in range(2):
        s = open_store(store_url)
        await s.open()
        assert await s.schema_version() == LATEST
        await s.close()
    s = open_store(store_url)
    await s.open()
    assert isinstance(s, SQLiteStore | PostgresStore)
    assert await raw_rows(s, "SELECT COUNT(*) FROM schema_migrations") == [(LATEST,)]
    await s.close()
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.close()


async def test_replicas_starting_at_once_migrate_once(postgres_schema_url: str) -> None:
    """The migrations run under an advisory lock: the first replica applies them, the
    others wait and find them applied (no duplicate table or version errors)."""
    replicas = [PostgresStore(postgres_schema_url) for _ in range(4)]
    await asyncio.gather(*(r.open() for r in replicas))
    try:
        assert [await r.schema_version() for r in replicas] == [LATEST] * 4
        assert await raw_rows(replicas[0], "SELECT COUNT(*) FROM schema_migrations") == [
            (LATEST,)]
        assert await replicas[0].state_version() == 0
    finally:
        await asyncio.gather(*(r.close() for r in replicas))


async def test_replicas_starting_together_bootstrap_an_empty_store_once(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(3)]
    for store in stores:
        await store.open()

    async def start(store: Store) -> BootstrapResult | None:
        async with store.exclusive("bootstrap"):
            return await bootstrap_if_empty(store)

    try:
        results = await asyncio.gather(*(start(s) for s in stores))
        assert sum(result is not None for result in results) == 1
        assert len(await stores[0].list_workspaces()) == 1
    finally:
        for store in stores:
            await store.close()


def test_backends_are_chosen_by_scheme_and_unknown_ones_refused() -> None:
    with pytest.raises(StoreError, match="unsupported scheme"):
        open_store("mysql://x")
    for url in ("postgresql://localhost/test", "postgres://u:p@db:5433/orca?sslmode=disable"):
        s = open_store(url)
        assert isinstance(s, PostgresStore) and s.url == url and s.pool_size == 10
    s = open_store("postgresql://db/orca?pool_size=3&application_name=relay")
    assert isinstance(s, PostgresStore)
    assert (s.dsn, s.pool_size) == ("postgresql://db/orca?application_name=relay", 3)
    for bad in ("postgresql://db/orca?pool_size=x", "postgresql://db/orca?pool_size=0"):
        with pytest.raises(StoreError, match="pool_size"):
            open_store(bad)


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    s = open_store("postgresql://orca:s3cret@127.0.0.1:1/orca")
    with pytest.raises(StoreError, match="cannot open PostgreSQL") as caught:
        await s.open()
    assert "s3cret" not in str(caught.value)


async def test_workspaces_users_keys_round_trip(store: AnyStore) -> None:
    assert await store.is_empty()
    ws = await store.create_workspace("acme", "free")
    assert await store.get_workspace(ws.id) == ws
    assert not await store.is_empty()
    user = await store.create_user("a@example.com", "scrypt$hash")
    await store.add_membership(user.id, ws.id, "member")
    await store.add_membership(user.id, ws.id, "admin")
    assert await store.memberships(user.id) == [(ws.id, "admin")]
    found = await store.get_user_by_email("a@example.com")
    assert found is not None and found[0] == user and found[1] == "scrypt$hash"
    record, _ = new_relay_key(ws.id, "ci", 100, "day")
    version = await store.state_version()
    await store.create_key(record)
    assert await store.state_version() == version + 1
    assert await store.get_key(record.id) == record
    assert await store.list_keys(ws.id) == [record]
    assert await store.active_keys() == [record]
    revoked = await store.revoke_key(record.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert await store.active_keys() == []
    assert await store.revoke_key("key_missing") is None


async def test_group_commit_sums_every_delta(store: AnyStore) -> None:
    ws = await store.create_workspace("acme", "paid")
    record, _ = new_relay_key(ws.id, "k")
    await store.create_key(record)
    commits = store.commits
    delta = [UsageDelta(record.id, "total", 3)]
    await asyncio.gather(*(store.add_usage(delta) for _ in range(5_000)))
    assert store.queue_depth() == 0
    assert await store.usage([(record.id, "total")]) == {(record.id, "total"): 15_000}
    assert store.commits - commits < 5_000 // 10  # grouped, not one transaction per write


async def test_a_failing_write_does_not_sink_its_group(store: AnyStore) -> None:
    ws = await store.create_workspace("acme", "paid")
    await store.create_user("dup@example.com", "h")
    results = await asyncio.gather(
        store.create_user("dup@example.com", "h2"),
        store.create_user("other@example.com", "h3"),
        store.create_workspace("second", "free"),
        return_exceptions=True,
    )
    assert isinstance(results[0], Conflict)
    assert not isinstance(results[1], BaseException)
    assert not isinstance(results[2], BaseException)
    assert await store.get_user_by_email("other@example.com") is not None
    assert len(await store.list_workspaces()) == 2 and ws in await store.list_workspaces()


async def test_two_stores_on_one_database_lose_no_update(store_url: str) -> None:
    """Two instances stand for two worker processes: both write usage concurrently."""
    a, b = open_store(store_url), open_store(store_url)
    await a.open()
    await b.open()
    try:
        ws = await a.create_workspace("acme", "paid")
        record, _ = new_relay_key(ws.id, "k")
        await a.create_key(record)
        one = [UsageDelta(record.id, "total", 1)]
        await asyncio.gather(*((a if i % 2 else b).add_usage(one) for i in range(2_000)))
        assert await b.usage([(record.id, "total")]) == {(record.id, "total"): 2_000}
        assert await b.state_version() == await a.state_version()
    finally:
        await a.close()
        await b.close()


async def test_close_commits_what_was_queued(store_url: str) -> None:
    url = store_url
    s = open_store(url)
    await s.open()
    ws = await s.create_workspace("acme", "paid")
    record, _ = new_relay_key(ws.id, "k")
    await s.create_key(record)
    one = [UsageDelta(record.id, "total", 2)]
    # Writes queued before close() are committed by it, not dropped.
    await asyncio.gather(*(s.add_usage(one) for _ in range(500)), s.close())
    again = open_store(url)
    await again.open()
    assert await again.usage([(record.id, "total")]) == {(record.id, "total"): 1_000}
    await again.close()


def test_rfc3339_now_is_the_same_text_as_the_slow_form() -> None:
    before = utc_now()
    fast = rfc3339_now()
    after = utc_now()
    assert rfc3339(before) <= fast <= rfc3339(after)
    parsed = datetime.strptime(fast, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before <= parsed <= after


async def test_firewall_policies_are_stored_listed_and_updated(store: AnyStore) -> None:
    ws = await store.create_workspace("acme", "paid")
    other = await store.create_workspace("other", "free")
    now = rfc3339_now()
    document = {"schema": 1, "default": "deny", "rules": [{"id": "r", "effect": "allow",
                                                          "tools": ["search"]}]}
    made = await store.create_firewall_policy(FirewallPolicyRecord(
        "fw_1", ws.id, "agents", "shadow", document, "user", now, now))
    await store.create_firewall_policy(FirewallPolicyRecord(
        "fw_2", other.id, "x", "enforce", document, "pack:soc2", now, now))
    version = await store.state_version()
    assert await store.list_firewall_policies(ws.id) == [made]
    assert len(await store.list_firewall_policies()) == 2
    updated = await store.update_firewall_policy("fw_1", mode="enforce", name="renamed")
    assert updated is not None
    assert (updated.mode, updated.name, updated.document) == ("enforce", "renamed", document)
    assert updated.updated_at >= made.updated_at
    assert await store.state_version() > version  # relays re-read their policies
    assert await store.update_firewall_policy("fw_nope", mode="shadow") is None
    with pytest.raises(StoreError):
        await store.create_firewall_policy(FirewallPolicyRecord(
            "fw_3", ws.id, "bad", "block", document, "user", now, now))
