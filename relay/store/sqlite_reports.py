"""SQLite jobs for signed reports, their files, share links and residency."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

from relay.store.base import GENESIS_HASH, ReportRecord, ShareRecord, rfc3339_now

_REPORT = ("id, workspace_id, framework, format, region, created_at, evidence_sha256, "
           "content_sha256, kid")
_SHARE = "id, workspace_id, report_id, token_hash, created_at, revoked_at"


def partition(region: str | None) -> str:
    return region or ""


def publish_keys(conn: sqlite3.Connection, pems: dict[str, str]) -> None:
    conn.executemany("INSERT INTO signing_keys (kid, public_pem, published_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (kid) DO NOTHING",
                     [(kid, pem, rfc3339_now()) for kid, pem in sorted(pems.items())])


def published_keys(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT kid, public_pem FROM signing_keys").fetchall())


def get_residency(conn: sqlite3.Connection, workspace_id: str) -> str | None:
    row = conn.execute("SELECT region FROM residency WHERE workspace_id = ?",
                       (workspace_id,)).fetchone()
    return row[0] if row else None


def set_residency(conn: sqlite3.Connection, workspace_id: str, region: str | None) -> str:
    conn.execute(
        "INSERT INTO residency (workspace_id, region, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (workspace_id) DO UPDATE SET region = excluded.region, "
        "updated_at = excluded.updated_at", (workspace_id, region, rfc3339_now()))
    return region or ""  # never None, so the audited wrapper records the change


def log_head(conn: sqlite3.Connection, workspace_id: str) -> dict[str, Any]:
    first, last, count = conn.execute(
        "SELECT MIN(seq), MAX(seq), COUNT(*) FROM evidence_events WHERE workspace_id = ?",
        (workspace_id,)).fetchone()
    head = conn.execute("SELECT hash FROM evidence_events WHERE workspace_id = ? AND seq = ?",
                        (workspace_id, last)).fetchone() if last is not None else None
    return {"first_seq": first or 0, "last_seq": last or 0, "events": int(count),
            "head_hash": head[0] if head else GENESIS_HASH}


def insert_report(conn: sqlite3.Connection, record: ReportRecord,
                  files: dict[str, bytes]) -> ReportRecord:
    conn.execute(f"INSERT INTO reports ({_REPORT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 dataclasses.astuple(record))
    conn.executemany(
        "INSERT INTO report_files (region, report_id, name, data) VALUES (?, ?, ?, ?)",
        [(partition(record.region), record.id, name, data) for name, data in files.items()])
    return record


def select_reports(conn: sqlite3.Connection, workspace_id: str) -> list[ReportRecord]:
    rows = conn.execute(f"SELECT {_REPORT} FROM reports WHERE workspace_id = ? "
                        "ORDER BY created_at, id", (workspace_id,)).fetchall()
    return [ReportRecord(*row) for row in rows]


def select_report(conn: sqlite3.Connection, report_id: str) -> ReportRecord | None:
    row = conn.execute(f"SELECT {_REPORT} FROM reports WHERE id = ?", (report_id,)).fetchone()
    return ReportRecord(*row) if row else None


def select_file(conn: sqlite3.Connection, report: ReportRecord, name: str) -> bytes | None:
    row = conn.execute("SELECT data FROM report_files WHERE region = ? AND report_id = ? "
                       "AND name = ?", (partition(report.region), report.id, name)).fetchone()
    return bytes(row[0]) if row else None


def insert_share(conn: sqlite3.Connection, record: ShareRecord) -> ShareRecord:
    conn.execute(f"INSERT INTO shares ({_SHARE}) VALUES (?, ?, ?, ?, ?, ?)",
                 dataclasses.astuple(record))
    return record


def select_share(conn: sqlite3.Connection, column: str, value: str) -> ShareRecord | None:
    assert column in ("id", "token_hash")
    row = conn.execute(f"SELECT {_SHARE} FROM shares WHERE {column} = ?", (value,)).fetchone()
    return ShareRecord(*row) if row else None


def revoke_share(conn: sqlite3.Connection, share_id: str, at: str) -> ShareRecord | None:
    cursor = conn.execute("UPDATE shares SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                          (at, share_id))
    return select_share(conn, "id", share_id) if cursor.rowcount else None
