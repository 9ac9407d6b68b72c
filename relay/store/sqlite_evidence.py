"""SQLite jobs for guardrails, workspace HMAC keys and the evidence chain.

Each function runs on the store's writer or reader thread with its connection. Event
sequencing happens inside the writer's transaction (BEGIN IMMEDIATE holds SQLite's write
lock, also against other worker processes), so `seq` stays gapless per workspace and each
event's `prev_hash` is the hash of the event before it.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from relay.store.base import GENESIS_HASH, GuardrailRecord, chain_hash
from relay.store.changes import guardrail_changes
from relay.store.sqlite_admin import chained_documents, moment

_GUARDRAIL_COLUMNS = (
    "id, workspace_id, name, mode, rules, is_default, source, created_at, updated_at"
)


def _guardrail(row: tuple[Any, ...]) -> GuardrailRecord:
    return GuardrailRecord(
        row[0], row[1], row[2], row[3], orjson.loads(row[4]), bool(row[5]), row[6], row[7],
        row[8],
    )


def bump_state(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'state_version'")


def insert_guardrail(conn: sqlite3.Connection, g: GuardrailRecord) -> GuardrailRecord:
    if g.is_default:
        conn.execute("UPDATE guardrails SET is_default = 0 WHERE workspace_id = ?",
                     (g.workspace_id,))
    conn.execute(
        f"INSERT INTO guardrails ({_GUARDRAIL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (g.id, g.workspace_id, g.name, g.mode, orjson.dumps(g.rules).decode(),
         int(g.is_default), g.source, g.created_at, g.updated_at),
    )
    bump_state(conn)
    return g


def select_guardrails(conn: sqlite3.Connection, workspace_id: str | None) -> list[GuardrailRecord]:
    if workspace_id is None:
        rows = conn.execute(f"SELECT {_GUARDRAIL_COLUMNS} FROM guardrails ORDER BY created_at, id")
    else:
        rows = conn.execute(
            f"SELECT {_GUARDRAIL_COLUMNS} FROM guardrails WHERE workspace_id = ? "
            "ORDER BY created_at, id", (workspace_id,))
    return [_guardrail(r) for r in rows.fetchall()]


def update_guardrail(
    conn: sqlite3.Connection, guardrail_id: str, mode: str | None, is_default: bool | None,
    name: str | None = None, rules: list[dict[str, Any]] | None = None,
) -> GuardrailRecord | None:
    row = conn.execute(
        f"SELECT {_GUARDRAIL_COLUMNS} FROM guardrails WHERE id = ?", (guardrail_id,)
    ).fetchone()
    if row is None:
        return None
    sets = guardrail_changes(name, mode, is_default, rules)
    if is_default:
        conn.execute("UPDATE guardrails SET is_default = 0 WHERE workspace_id = ?", (row[1],))
    assignments = ", ".join(f"{column} = ?" for column in sets)
    conn.execute(f"UPDATE guardrails SET {assignments} WHERE id = ?",
                 (*sets.values(), guardrail_id))
    bump_state(conn)
    return _guardrail(conn.execute(
        f"SELECT {_GUARDRAIL_COLUMNS} FROM guardrails WHERE id = ?", (guardrail_id,)
    ).fetchone())


def ensure_hmac_keys(conn: sqlite3.Connection) -> dict[str, bytes]:
    missing = conn.execute(
        "SELECT id FROM workspaces WHERE id NOT IN (SELECT workspace_id FROM workspace_secrets)"
    ).fetchall()
    conn.executemany(
        "INSERT INTO workspace_secrets (workspace_id, hmac_key) VALUES (?, ?)",
        [(ws, secrets.token_hex(32)) for (ws,) in missing],
    )
    rows = conn.execute("SELECT workspace_id, hmac_key FROM workspace_secrets").fetchall()
    return {ws: bytes.fromhex(key) for ws, key in rows}


def append_events(conn: sqlite3.Connection, events: Sequence[Any]) -> None:
    heads: dict[str, tuple[int, str]] = {}
    rows = []
    for event in events:
        ws = event.workspace_id
        if ws not in heads:
            row = conn.execute(
                "SELECT seq, hash FROM evidence_events WHERE workspace_id = ? "
                "ORDER BY seq DESC LIMIT 1", (ws,)).fetchone()
            heads[ws] = (int(row[0]), row[1]) if row else (0, GENESIS_HASH)
        seq, prev = heads[ws]
        seq += 1
        document = {**event.document(), "seq": seq}
        body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        digest = chain_hash(prev, body)
        heads[ws] = (seq, digest)
        rows.append((ws, seq, event.id, event.at, event.plane, event.request_id, event.key_id,
                     body.decode(), prev, digest))
    conn.executemany(
        "INSERT INTO evidence_events (workspace_id, seq, id, at, plane, request_id, key_id, "
        "body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def select_events(
    conn: sqlite3.Connection, workspace_id: str, plane: str, after_seq: int, limit: int
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT body, prev_hash, hash FROM evidence_events WHERE workspace_id = ? AND plane = ? "
        "AND seq > ? ORDER BY seq LIMIT ?", (workspace_id, plane, after_seq, limit)).fetchall()
    return chained_documents(rows)


# Top-level body fields a feed may filter on (their names are put into the SQL text).
EVENT_FILTERS = frozenset({
    "request_id", "key_id", "guardrail_id", "policy_id", "rule_id", "detector", "category",
    "mode", "verdict", "outcome", "point",
})


def query_events(
    conn: sqlite3.Connection, workspace_id: str, plane: str, filters: dict[str, str],
    since: str | None, until: str | None, before_seq: int | None, limit: int,
) -> list[dict[str, Any]]:
    """Newest first. A filter matches text values only: json_extract gives booleans as
    integers and null as NULL, which never equal a text parameter. `since` and `until`
    may be any RFC 3339 form; they are compared in the stored one."""
    clauses = ["workspace_id = ?", "plane = ?"]
    params: list[Any] = [workspace_id, plane]
    for name, value in sorted(filters.items()):
        if name not in EVENT_FILTERS:
            raise ValueError(f"cannot filter events on {name!r}")
        clauses.append(f"json_extract(body, '$.{name}') = ?")
        params.append(value)
    bounds: list[tuple[str, Any]] = [
        ("seq < ?", before_seq),
        ("at >= ?", None if since is None else moment(since)),
        ("at < ?", None if until is None else moment(until)),
    ]
    for clause, value in bounds:
        if value is not None:
            clauses.append(clause)
            params.append(value)
    rows = conn.execute(
        f"SELECT body, prev_hash, hash FROM evidence_events WHERE {' AND '.join(clauses)} "
        "ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
    return chained_documents(rows)
