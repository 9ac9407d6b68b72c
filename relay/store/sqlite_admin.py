"""SQLite jobs for console sessions, login throttling and the audit trail.

The audit trail is a hash chain per workspace, like the evidence chain: an entry's `seq`
is computed inside the writer's transaction (BEGIN IMMEDIATE holds SQLite's write lock,
also against other worker processes), so it stays gapless, and its hash commits to the
previous entry's hash and its own canonical document (relay/store/audit.py).

`audited(job, draft)` is how a mutation and its audit entry share one transaction: the
wrapped job runs in the writer's per-job savepoint, so both commit or neither does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson

from relay.store.audit import audit_document, canonical_bytes
from relay.store.base import (
    AUDIT_ACTIONS,
    GENESIS_HASH,
    AuditDraft,
    SessionRecord,
    chain_hash,
    rfc3339,
    rfc3339_now,
)

T = TypeVar("T")

LOGIN_FAILURE_RETENTION = timedelta(days=1)

_SESSION_COLUMNS = "id, user_id, token_hash, created_at, expires_at, last_seen_at, revoked_at"


def moment(text: str) -> str:
    """An RFC 3339 time in the store's one text form (UTC, microseconds, Z), so that text
    comparison is time comparison; ValueError if it is not a time."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return rfc3339(parsed)


# ---- audit trail ------------------------------------------------------------------------


def append_audit(
    conn: sqlite3.Connection, draft: AuditDraft, after: dict[str, Any] | None
) -> dict[str, Any]:
    if draft.action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {draft.action!r}")
    head = conn.execute(
        "SELECT seq, hash FROM audit_log WHERE workspace_id = ? ORDER BY seq DESC LIMIT 1",
        (draft.workspace_id,)).fetchone()
    seq, prev = (int(head[0]) + 1, head[1]) if head else (1, GENESIS_HASH)
    document = audit_document(draft.workspace_id, seq, rfc3339_now(), draft.actor,
                              draft.action, draft.target, draft.before, after)
    body = canonical_bytes(document)
    digest = chain_hash(prev, body)
    conn.execute(
        "INSERT INTO audit_log (workspace_id, seq, at, actor, action, target, body, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (draft.workspace_id, seq, document["at"], draft.actor, draft.action, draft.target,
         body.decode(), prev, digest))
    return {**document, "prev_hash": prev, "hash": digest}


def audited(
    job: Callable[[sqlite3.Connection], T], draft: AuditDraft | None
) -> Callable[[sqlite3.Connection], T]:
    """`job` followed, in the same savepoint, by its audit entry (none if it found
    nothing, i.e. returned None). `draft.after` sees the job's result."""
    if draft is None:
        return job

    def run(conn: sqlite3.Connection) -> T:
        result = job(conn)
        if result is not None:
            append_audit(conn, draft, draft.after(result) if draft.after is not None else None)
        return result

    return run


def chained_documents(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows of (body, prev_hash, hash) as the stored documents with their chain hashes."""
    out = []
    for body, prev_hash, digest in rows:
        document: dict[str, Any] = orjson.loads(body)
        document["prev_hash"] = prev_hash
        document["hash"] = digest
        out.append(document)
    return out


def select_audit(
    conn: sqlite3.Connection, workspace_id: str, before_seq: int | None, limit: int
) -> list[dict[str, Any]]:
    before = "AND seq < ? " if before_seq is not None else ""
    params = (workspace_id, before_seq) if before_seq is not None else (workspace_id,)
    rows = conn.execute(
        f"SELECT body, prev_hash, hash FROM audit_log WHERE workspace_id = ? {before}"
        "ORDER BY seq DESC LIMIT ?", (*params, limit)).fetchall()
    return chained_documents(rows)


def select_audit_chain(conn: sqlite3.Connection, workspace_id: str | None) -> list[dict[str, Any]]:
    where, params = ("", ()) if workspace_id is None else ("WHERE workspace_id = ? ",
                                                          (workspace_id,))
    rows = conn.execute(
        f"SELECT body, prev_hash, hash FROM audit_log {where}ORDER BY workspace_id, seq",
        params).fetchall()
    return chained_documents(rows)


# ---- console sessions -------------------------------------------------------------------


def insert_session(conn: sqlite3.Connection, s: SessionRecord) -> SessionRecord:
    conn.execute(
        f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (s.id, s.user_id, s.token_hash, s.created_at, s.expires_at, s.last_seen_at,
         s.revoked_at))
    return s


def select_session(conn: sqlite3.Connection, token_hash: str) -> SessionRecord | None:
    row = conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE token_hash = ?",
                       (token_hash,)).fetchone()
    return SessionRecord(*row) if row else None


def touch_session(conn: sqlite3.Connection, session_id: str, at: str) -> None:
    conn.execute("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (at, session_id))


def revoke_session(conn: sqlite3.Connection, session_id: str, at: str) -> None:
    conn.execute("UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                 (at, session_id))


# ---- login throttling -------------------------------------------------------------------


def add_login_failure(conn: sqlite3.Connection, email: str, address: str, at: str) -> None:
    when = moment(at)
    cutoff = rfc3339(datetime.fromisoformat(when) - LOGIN_FAILURE_RETENTION)
    conn.execute("DELETE FROM login_failures WHERE at < ?", (cutoff,))
    conn.execute("INSERT INTO login_failures (email, address, at) VALUES (?, ?, ?)",
                 (email, address, when))


def count_login_failures(
    conn: sqlite3.Connection, email: str, address: str, since: str
) -> tuple[int, int]:
    start = moment(since)
    (by_email,) = conn.execute(
        "SELECT COUNT(*) FROM login_failures WHERE email = ? AND at >= ?",
        (email, start)).fetchone()
    (by_address,) = conn.execute(
        "SELECT COUNT(*) FROM login_failures WHERE address = ? AND at >= ?",
        (address, start)).fetchone()
    return int(by_email), int(by_address)
