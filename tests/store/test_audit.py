"""The audit chain's verification: `verify_audit_chain` and `orca-relay audit verify`
find an edited, a deleted and two reordered entries, in a real SQLite file and in a
PostgreSQL schema (rows changed past the store, with sqlite3 and with asyncpg)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from relay.cli import main
from relay.store.audit import verify_audit_chain
from relay.store.base import GENESIS_HASH, AuditDraft, open_store
from tests.store.conftest import raw_execute


def _trail(url: str) -> tuple[str, str]:
    """Two workspaces with 4 and 2 audit entries; their ids."""

    async def build() -> tuple[str, str]:
        store = open_store(url)
        await store.open()
        try:
            a = await store.create_workspace("a", "paid")
            b = await store.create_workspace("b", "free")
            for i in range(4):
                await store.append_audit(AuditDraft(a.id, "cli", "report.generate", f"rep_{i}",
                                                    before={"n": i}))
            for i in range(2):
                await store.append_audit(AuditDraft(b.id, "system", "share.create", f"sh_{i}"))
            return a.id, b.id
        finally:
            await store.close()

    return asyncio.run(build())


def _chain(url: str, workspace_id: str | None = None) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = open_store(url)
        await store.open()
        try:
            return await store.audit_chain(workspace_id)
        finally:
            await store.close()

    return asyncio.run(read())


Statements = list[tuple[str, tuple[Any, ...]]]


def _edit(ws: str) -> Statements:
    return [("UPDATE audit_log SET body = replace(body, 'rep_2', 'rep_9') "
             "WHERE workspace_id = ? AND seq = 3", (ws,))]


def _delete(ws: str) -> Statements:
    return [("DELETE FROM audit_log WHERE workspace_id = ? AND seq = 2", (ws,))]


def _reorder(ws: str) -> Statements:
    return [("UPDATE audit_log SET seq = ? WHERE workspace_id = ? AND seq = ?", (new, ws, old))
            for old, new in ((2, -2), (3, 2), (-2, 3))]


Tamper = Callable[[str], Statements]
TAMPERING: list[tuple[Tamper, str]] = [
    (_edit, "seq 3: hash does not match"),
    (_delete, "seq 3: seq gap (follows seq 1)"),
    (_reorder, "seq 2: seq out of order (follows seq 3)"),
]


def _tamper(url: str, how: Tamper, ws: str) -> None:
    """Change the rows directly: sqlite3 on the file, asyncpg in the schema."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        with conn:
            for sql, params in how(ws):
                conn.execute(sql, params)
        conn.close()
        return
    for sql, params in how(ws):
        asyncio.run(raw_execute(url, sql, *params))


def test_an_untouched_trail_verifies(store_url: str) -> None:
    a, b = _trail(store_url)
    entries = _chain(store_url)
    assert [(e["workspace_id"], e["seq"]) for e in entries] == sorted(
        [(a, n) for n in range(1, 5)] + [(b, n) for n in range(1, 3)])
    assert verify_audit_chain(entries) == []
    assert verify_audit_chain([]) == []


@pytest.mark.parametrize(("how", "problem"), TAMPERING, ids=["edited", "deleted", "reordered"])
def test_tampering_is_found(store_url: str, how: Tamper, problem: str) -> None:
    a, b = _trail(store_url)
    _tamper(store_url, how, a)
    problems = verify_audit_chain(_chain(store_url))
    assert problems, "tampering went unnoticed"
    assert all(a in p for p in problems)  # the other workspace's chain is intact
    assert any(problem in p for p in problems), problems
    assert verify_audit_chain(_chain(store_url, b)) == []


def test_link_and_field_problems_are_reported() -> None:
    entry = {"workspace_id": "ws_1", "seq": 1, "at": "t", "actor": "cli",
             "action": "report.generate", "target": "rep", "before": None, "after": None,
             "prev_hash": "f" * 64, "hash": "0" * 64}
    problems = verify_audit_chain([entry])
    assert "workspace ws_1 seq 1: prev_hash is not the previous entry's hash" in problems
    assert "workspace ws_1 seq 1: hash does not match the entry's content" in problems
    assert verify_audit_chain([{"seq": 1}])[0].startswith("entry 0: missing workspace_id")
    assert GENESIS_HASH not in "".join(problems)


def test_the_cli_exits_0_when_intact_and_1_with_each_problem(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _trail(store_url)
    store = ["--database-url", store_url]
    assert main(["audit", "verify", *store]) == 0
    assert "intact: 6 entries in 2 workspace(s)" in capsys.readouterr().out
    _tamper(store_url, _edit, a)
    assert main(["audit", "verify", *store]) == 1
    out = capsys.readouterr().out
    assert f"workspace {a} seq 3: hash does not match the entry's content" in out
    assert "NOT intact" in out
    assert main(["audit", "verify", "--workspace", b, "--json", *store]) == 0
    assert orjson.loads(capsys.readouterr().out) == {
        "intact": True, "entries": 2, "workspaces": 1, "problems": []}
    assert main(["audit", "verify", "--workspace", a, "--json", *store]) == 1
    report = orjson.loads(capsys.readouterr().out)
    assert report["intact"] is False and report["entries"] == 4 and report["problems"]
    assert main(["audit", "verify", "--workspace", "ws_missing", *store]) == 1
    assert "no workspace ws_missing" in capsys.readouterr().err
