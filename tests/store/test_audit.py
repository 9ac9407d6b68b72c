"""The audit chain's verification: `verify_audit_chain` and `orca-relay audit verify`
find an edited, a deleted and two reordered entries in a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from relay.cli import main
from relay.store.audit import verify_audit_chain
from relay.store.base import GENESIS_HASH, AuditDraft
from relay.store.sqlite import SQLiteStore


def _trail(path: Path) -> tuple[str, str]:
    """Two workspaces with 4 and 2 audit entries; their ids."""

    async def build() -> tuple[str, str]:
        store = SQLiteStore(f"sqlite:///{path}")
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


def _chain(path: Path, workspace_id: str | None = None) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = SQLiteStore(f"sqlite:///{path}")
        await store.open()
        try:
            return await store.audit_chain(workspace_id)
        finally:
            await store.close()

    return asyncio.run(read())


def _edit(conn: sqlite3.Connection, ws: str) -> None:
    conn.execute("UPDATE audit_log SET body = replace(body, 'rep_2', 'rep_9') "
                 "WHERE workspace_id = ? AND seq = 3", (ws,))


def _delete(conn: sqlite3.Connection, ws: str) -> None:
    conn.execute("DELETE FROM audit_log WHERE workspace_id = ? AND seq = 2", (ws,))


def _reorder(conn: sqlite3.Connection, ws: str) -> None:
    for old, new in ((2, -2), (3, 2), (-2, 3)):
        conn.execute("UPDATE audit_log SET seq = ? WHERE workspace_id = ? AND seq = ?",
                     (new, ws, old))


Tamper = Callable[[sqlite3.Connection, str], None]
TAMPERING: list[tuple[Tamper, str]] = [
    (_edit, "seq 3: hash does not match"),
    (_delete, "seq 3: seq gap (follows seq 1)"),
    (_reorder, "seq 2: seq out of order (follows seq 3)"),
]


def _tamper(path: Path, how: Tamper, ws: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        how(conn, ws)
    conn.close()


def test_an_untouched_trail_verifies(tmp_path: Path) -> None:
    path = tmp_path / "orca.db"
    a, b = _trail(path)
    entries = _chain(path)
    assert [(e["workspace_id"], e["seq"]) for e in entries] == sorted(
        [(a, n) for n in range(1, 5)] + [(b, n) for n in range(1, 3)])
    assert verify_audit_chain(entries) == []
    assert verify_audit_chain([]) == []


@pytest.mark.parametrize(("how", "problem"), TAMPERING, ids=["edited", "deleted", "reordered"])
def test_tampering_is_found(tmp_path: Path, how: Tamper, problem: str) -> None:
    path = tmp_path / "orca.db"
    a, b = _trail(path)
    _tamper(path, how, a)
    problems = verify_audit_chain(_chain(path))
    assert problems, "tampering went unnoticed"
    assert all(a in p for p in problems)  # the other workspace's chain is intact
    assert any(problem in p for p in problems), problems
    assert verify_audit_chain(_chain(path, b)) == []


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
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "orca.db"
    a, b = _trail(path)
    store = ["--database-url", f"sqlite:///{path}"]
    assert main(["audit", "verify", *store]) == 0
    assert "intact: 6 entries in 2 workspace(s)" in capsys.readouterr().out
    _tamper(path, _edit, a)
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
