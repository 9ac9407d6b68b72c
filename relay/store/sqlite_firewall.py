"""SQLite jobs for firewall policies (run on the store's writer or reader thread)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from relay.store.base import FirewallPolicyRecord
from relay.store.changes import policy_changes
from relay.store.sqlite_evidence import bump_state

_COLUMNS = "id, workspace_id, name, mode, document, source, created_at, updated_at"


def _policy(row: tuple[Any, ...]) -> FirewallPolicyRecord:
    return FirewallPolicyRecord(row[0], row[1], row[2], row[3], orjson.loads(row[4]), row[5],
                                row[6], row[7])


def insert_policy(conn: sqlite3.Connection, p: FirewallPolicyRecord) -> FirewallPolicyRecord:
    conn.execute(
        f"INSERT INTO firewall_policies ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (p.id, p.workspace_id, p.name, p.mode, orjson.dumps(p.document).decode(), p.source,
         p.created_at, p.updated_at))
    bump_state(conn)
    return p


def select_policies(
    conn: sqlite3.Connection, workspace_id: str | None
) -> list[FirewallPolicyRecord]:
    where, params = ("WHERE workspace_id = ? ", (workspace_id,)) if workspace_id else ("", ())
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM firewall_policies {where}ORDER BY created_at, id", params)
    return [_policy(r) for r in rows.fetchall()]


def update_policy(
    conn: sqlite3.Connection, policy_id: str, name: str | None, mode: str | None,
    document: dict[str, Any] | None,
) -> FirewallPolicyRecord | None:
    sets = policy_changes(name, mode, document)
    assignments = ", ".join(f"{column} = ?" for column in sets)
    cursor = conn.execute(f"UPDATE firewall_policies SET {assignments} WHERE id = ?",
                          (*sets.values(), policy_id))
    if cursor.rowcount == 0:
        return None
    bump_state(conn)
    return _policy(conn.execute(
        f"SELECT {_COLUMNS} FROM firewall_policies WHERE id = ?", (policy_id,)).fetchone())
