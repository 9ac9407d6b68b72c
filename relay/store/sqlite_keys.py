"""SQLite jobs for relay keys and their usage buckets (run on the store's threads)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from relay.store.base import QuotaPeriod, RelayKey, UsageDelta, rfc3339, utc_now
from relay.store.changes import key_changes
from relay.store.sqlite_evidence import bump_state

_COLUMNS = (
    "id, workspace_id, name, key_hash, prefix, created_at, revoked_at, "
    "quota_tokens, quota_period, guardrail_id"
)


def _key(row: tuple[Any, ...]) -> RelayKey:
    return RelayKey(*row)


def insert_key(conn: sqlite3.Connection, key: RelayKey) -> RelayKey:
    conn.execute(
        f"INSERT INTO relay_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (key.id, key.workspace_id, key.name, key.key_hash, key.prefix, key.created_at,
         key.revoked_at, key.quota_tokens, key.quota_period, key.guardrail_id),
    )
    bump_state(conn)
    return key


def select_key(conn: sqlite3.Connection, key_id: str) -> RelayKey | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM relay_keys WHERE id = ?", (key_id,)).fetchone()
    return _key(row) if row else None


def select_keys(conn: sqlite3.Connection, *, workspace_id: str | None = None) -> list[RelayKey]:
    """One workspace's keys (revoked included), or every workspace's active keys."""
    if workspace_id is not None:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM relay_keys WHERE workspace_id = ? ORDER BY created_at, id",
            (workspace_id,))
    else:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM relay_keys WHERE revoked_at IS NULL")
    return [_key(r) for r in rows.fetchall()]


def revoke_key(conn: sqlite3.Connection, key_id: str) -> RelayKey | None:
    conn.execute("UPDATE relay_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                 (rfc3339(utc_now()), key_id))
    bump_state(conn)
    return select_key(conn, key_id)


def add_usage(conn: sqlite3.Connection, deltas: Sequence[UsageDelta]) -> None:
    conn.executemany(
        "INSERT INTO usage (key_id, period, tokens) VALUES (?, ?, ?) "
        "ON CONFLICT (key_id, period) DO UPDATE SET tokens = tokens + excluded.tokens",
        [(d.key_id, d.period, d.tokens) for d in deltas],
    )


def select_usage(
    conn: sqlite3.Connection, buckets: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for key_id, period in buckets:
        row = conn.execute(
            "SELECT tokens FROM usage WHERE key_id = ? AND period = ?", (key_id, period)
        ).fetchone()
        found[(key_id, period)] = int(row[0]) if row else 0
    return found


def update_key(
    conn: sqlite3.Connection, key_id: str, name: str | None,
    quota: tuple[int | None, QuotaPeriod | None] | None, guardrail_id: tuple[str | None] | None,
) -> RelayKey | None:
    sets = key_changes(name, quota, guardrail_id)
    if sets:
        assignments = ", ".join(f"{column} = ?" for column in sets)
        cursor = conn.execute(f"UPDATE relay_keys SET {assignments} WHERE id = ?",
                              (*sets.values(), key_id))
        if cursor.rowcount == 0:
            return None
        bump_state(conn)
    return select_key(conn, key_id)
