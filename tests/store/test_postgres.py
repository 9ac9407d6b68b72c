"""What only the PostgreSQL backend has to show: several replicas (stores with pools of
their own) writing one workspace's evidence and audit chains at once, deadlock-free
lock order across workspaces, and how failed groups are reported."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest

from relay.evidence import EvidenceEvent
from relay.proxy.access import new_relay_key
from relay.store.audit import verify_audit_chain
from relay.store.base import (
    GENESIS_HASH,
    AuditDraft,
    Conflict,
    StoreError,
    UsageDelta,
    chain_hash,
)
from relay.store.postgres import PostgresStore

N = 200  # events and audit entries per replica


def _event(ws: str, n: int, origin: str) -> EvidenceEvent:
    return EvidenceEvent(ws, "guardrail", f"req_{origin}_{n}", None,
                         {"verdict": "allow", "origin": origin})


def _verify_events(events: list[dict[str, Any]]) -> list[str]:
    problems = []
    prev = GENESIS_HASH
    for expected_seq, event in enumerate(events, 1):
        document = {k: v for k, v in event.items() if k not in ("prev_hash", "hash")}
        if event["seq"] != expected_seq:
            problems.append(f"seq {event['seq']} where {expected_seq} was due")
        if event["prev_hash"] != prev:
            problems.append(f"seq {event['seq']}: broken link")
        body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        if chain_hash(event["prev_hash"], body) != event["hash"]:
            problems.append(f"seq {event['seq']}: hash does not match")
        prev = event["hash"]
    return problems


async def _replicas(url: str, count: int = 2) -> list[PostgresStore]:
    stores = [PostgresStore(url) for _ in range(count)]
    for store in stores:
        await store.open()
    return stores


async def test_two_replicas_keep_gapless_verifiable_chains(postgres_schema_url: str) -> None:
    a, b = await _replicas(postgres_schema_url)
    try:
        ws = (await a.create_workspace("acme", "paid")).id
        other = (await b.create_workspace("other", "free")).id

        async def pump(store: PostgresStore, origin: str) -> None:
            """One write at a time: many small transactions racing the other replica's."""
            for n in range(N // 2):
                await store.append_events([_event(ws, n, origin)])
                await store.append_audit(AuditDraft(ws, origin, "report.generate", f"r{n}"))

        # Half as many small transactions, half in large groups (everything at once),
        # both replicas interleaved; some groups hold both workspaces' locks, in either
        # order of the events, which must not deadlock.
        burst = [
            (a if i % 2 else b).append_events(
                [_event(ws, i, "burst"), _event(other, i, "burst")] if i % 3
                else [_event(other, i, "burst"), _event(ws, i, "burst")])
            for i in range(N)
        ]
        audits = [
            (b if i % 2 else a).append_audit(AuditDraft(ws, "cli", "share.create", f"s{i}"))
            for i in range(N)
        ]
        await asyncio.gather(pump(a, "a"), pump(b, "b"), *burst, *audits)

        events = await a.list_events(ws, "guardrail", limit=10 * N)
        assert [e["seq"] for e in events] == list(range(1, 2 * N + 1))
        assert _verify_events(events) == []
        assert len({e["id"] for e in events}) == 2 * N
        others = await b.list_events(other, "guardrail", limit=10 * N)
        assert [e["seq"] for e in others] == list(range(1, N + 1))
        assert _verify_events(others) == []

        chain = await b.audit_chain(ws)
        assert [e["seq"] for e in chain] == list(range(1, 2 * N + 1))
        assert verify_audit_chain(chain) == []
        assert await a.evidence_log_head(ws) == {
            "first_seq": 1, "last_seq": 2 * N, "head_hash": events[-1]["hash"],
            "events": 2 * N}
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_replicas_adding_usage_in_opposite_orders_lose_nothing(
    postgres_schema_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Groups of two replicas that upsert the same buckets in opposite orders queue on
    the usage lock the writer takes first instead of deadlocking on the rows."""
    a, b = await _replicas(postgres_schema_url)
    try:
        ws = (await a.create_workspace("acme", "paid")).id
        keys = [new_relay_key(ws, f"k{i}")[0] for i in range(4)]
        for key in keys:
            await a.create_key(key)
        forward = [UsageDelta(k.id, "total", 1) for k in keys]
        backward = list(reversed(forward))
        await asyncio.gather(*(
            (a if i % 2 else b).add_usage(forward if i % 3 else backward) for i in range(400)))
        for _ in range(5):  # one bucket per write: a group's jobs lock rows in its order
            await asyncio.gather(*(a.add_usage([delta]) for delta in forward),
                                 *(b.add_usage([delta]) for delta in backward))
        usage = await b.usage([(k.id, "total") for k in keys])
        assert set(usage.values()) == {400 + 5 * 2}
        assert not [r for r in caplog.records if "deadlocked" in r.getMessage()]
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_a_deadlocked_group_is_run_again(
    postgres_schema_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Locks no write names in advance, taken in opposite orders by two replicas: the
    server aborts one group, whose writer runs it again; both callers see success."""
    a, b = await _replicas(postgres_schema_url)
    runs: list[str] = []

    def crossing(name: str, first: int, second: int) -> Any:
        async def job(conn: Any) -> str:
            runs.append(name)
            await conn.execute("SELECT pg_advisory_xact_lock($1::bigint)", first)
            await asyncio.sleep(0.2)
            await conn.execute("SELECT pg_advisory_xact_lock($1::bigint)", second)
            return name

        return job

    try:
        done = await asyncio.gather(a._write(crossing("a", 11, 12)),
                                    b._write(crossing("b", 12, 11)))
        assert list(done) == ["a", "b"]
        assert sorted(runs) in (["a", "a", "b"], ["a", "b", "b"])
        assert [r for r in caplog.records if "deadlocked" in r.getMessage()]
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_a_failing_job_is_isolated_and_not_a_group_failure(
    postgres_store: PostgresStore,
) -> None:
    failures: list[int] = []
    postgres_store.on_write_failure = failures.append
    ws = (await postgres_store.create_workspace("acme", "paid")).id
    commits = postgres_store.commits
    results = await asyncio.gather(
        postgres_store.append_events([_event(ws, 1, "x")]),
        postgres_store.append_events([_event("ws_missing", 1, "x")]),  # foreign key
        postgres_store.append_audit(AuditDraft(ws, "cli", "key.explode", "k")),
        postgres_store.append_events([_event(ws, 2, "x")]),
        return_exceptions=True,
    )
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], Conflict)
    assert isinstance(results[2], ValueError)
    assert failures == []
    assert postgres_store.commits == commits + 1  # the group, run again isolated
    assert [e["seq"] for e in await postgres_store.list_events(ws, "guardrail")] == [1, 2]


async def test_a_group_that_cannot_commit_fails_every_caller(
    postgres_store: PostgresStore,
) -> None:
    failures: list[int] = []
    postgres_store.on_write_failure = failures.append
    ws = (await postgres_store.create_workspace("acme", "paid")).id
    pool = postgres_store._pool
    await pool.close()  # as if the server were gone
    results = await asyncio.gather(
        *(postgres_store.append_events([_event(ws, i, "x")]) for i in range(3)),
        return_exceptions=True)
    assert all(isinstance(r, StoreError) for r in results)
    assert sum(failures) == 3
    with pytest.raises(StoreError):
        await postgres_store.list_workspaces()


async def test_store_errors_before_open_and_after_close(postgres_schema_url: str) -> None:
    store = PostgresStore(postgres_schema_url)
    with pytest.raises(StoreError, match="not open"):
        await store.flush()
    with pytest.raises(StoreError, match="not open"):
        store.append_events([])
    with pytest.raises(StoreError, match="not open"):
        await store.list_workspaces()
    await store.open()
    await store.close()
    await store.close()  # twice is harmless
    with pytest.raises(StoreError, match="not open"):
        await store.get_workspace("ws_1")


async def test_queue_depth_and_flush(postgres_store: PostgresStore) -> None:
    ws = (await postgres_store.create_workspace("acme", "paid")).id
    futures = [postgres_store.append_events([_event(ws, i, "q")]) for i in range(50)]
    assert postgres_store.queue_depth() == 50
    await postgres_store.flush()
    assert all(f.done() for f in futures) and postgres_store.queue_depth() == 0
    pairs = itertools.pairwise(await postgres_store.list_events(ws, "guardrail", limit=100))
    assert all(y["seq"] == x["seq"] + 1 for x, y in pairs)
