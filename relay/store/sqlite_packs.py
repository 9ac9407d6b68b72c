"""SQLite jobs for compliance packs: install and go-live each in one transaction (the
writer's savepoint per job), and the event counts readiness is drawn from."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

from relay.store.base import FirewallPolicyRecord, GuardrailRecord, PackInstallation
from relay.store.sqlite_admin import moment
from relay.store.sqlite_evidence import EVENT_FILTERS, insert_guardrail, update_guardrail
from relay.store.sqlite_firewall import insert_policy, update_policy

_COLUMNS = ("workspace_id, framework, version, state, guardrail_id, firewall_policy_id, "
            "installed_at, live_at")


def _installation(row: tuple[Any, ...]) -> PackInstallation:
    return PackInstallation(*row)


def install(conn: sqlite3.Connection, installation: PackInstallation,
            guardrail: GuardrailRecord, policy: FirewallPolicyRecord) -> PackInstallation:
    insert_guardrail(conn, guardrail)
    insert_policy(conn, policy)
    conn.execute(f"INSERT INTO pack_installations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 dataclasses.astuple(installation))
    return installation


def golive(conn: sqlite3.Connection, workspace_id: str, framework: str,
           promote_default: bool, at: str) -> PackInstallation | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM pack_installations WHERE workspace_id = ? "
                       "AND framework = ?", (workspace_id, framework)).fetchone()
    if row is None:
        return None
    current = _installation(row)
    update_guardrail(conn, current.guardrail_id, "enforce", True if promote_default else None)
    update_policy(conn, current.firewall_policy_id, None, "enforce", None)
    conn.execute("UPDATE pack_installations SET state = 'live', live_at = ? "
                 "WHERE workspace_id = ? AND framework = ?", (at, workspace_id, framework))
    return dataclasses.replace(current, state="live", live_at=at)


def select_installations(conn: sqlite3.Connection, workspace_id: str) -> list[PackInstallation]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM pack_installations WHERE workspace_id = ? "
                        "ORDER BY installed_at, framework", (workspace_id,)).fetchall()
    return [_installation(r) for r in rows]


def count_control_events(conn: sqlite3.Connection, workspace_id: str, plane: str,
                         owner: tuple[str, str], since: str
                         ) -> list[tuple[str | None, bool, str, int]]:
    field, value = owner
    if field not in EVENT_FILTERS:
        raise ValueError(f"cannot count events by {field!r}")
    rows = conn.execute(
        "SELECT json_extract(body, '$.rule_id'), json_extract(body, '$.would_have'), "
        "json_extract(body, '$.outcome'), COUNT(*) FROM evidence_events "
        f"WHERE workspace_id = ? AND plane = ? AND json_extract(body, '$.{field}') = ? "
        "AND at >= ? GROUP BY 1, 2, 3", (workspace_id, plane, value, moment(since))).fetchall()
    return [(rule, bool(would), outcome, int(n)) for rule, would, outcome, n in rows]
