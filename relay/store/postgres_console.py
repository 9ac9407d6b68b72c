"""PostgreSQL jobs for the audit trail, console sessions, login throttling, compliance
packs, signed reports, share links and residency: the asyncpg counterparts of
sqlite_admin / sqlite_packs / sqlite_reports (same results, same errors)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime
from typing import Any, TypeVar

import orjson

from relay.store.audit import audit_document, canonical_bytes
from relay.store.base import (
    AUDIT_ACTIONS,
    GENESIS_HASH,
    AuditDraft,
    FirewallPolicyRecord,
    GuardrailRecord,
    PackInstallation,
    ReportRecord,
    SessionRecord,
    ShareRecord,
    chain_hash,
    rfc3339,
    rfc3339_now,
)
from relay.store.postgres_jobs import (
    BODY_JSON,
    Conn,
    Job,
    affected,
    audit_lock,
    chain_lock,
    field_equals,
    insert_guardrail,
    insert_policy,
    json_text,
    update_guardrail,
    update_policy,
)
from relay.store.sqlite_admin import LOGIN_FAILURE_RETENTION, chained_documents, moment
from relay.store.sqlite_evidence import EVENT_FILTERS
from relay.store.sqlite_reports import partition

T = TypeVar("T")

SESSION_COLUMNS = "id, user_id, token_hash, created_at, expires_at, last_seen_at, revoked_at"
INSTALLATION_COLUMNS = ("workspace_id, framework, version, state, guardrail_id, "
                        "firewall_policy_id, installed_at, live_at")
REPORT_COLUMNS = ("id, workspace_id, framework, format, region, created_at, evidence_sha256, "
                  "content_sha256, kid")
SHARE_COLUMNS = "id, workspace_id, report_id, token_hash, created_at, revoked_at"


def _placeholders(count: int) -> str:
    return ", ".join(f"${n}" for n in range(1, count + 1))


# ---- the audit trail -----------------------------------------------------------------------


async def append_audit(conn: Conn, draft: AuditDraft, after: dict[str, Any] | None
                       ) -> dict[str, Any]:
    if draft.action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {draft.action!r}")
    await chain_lock(conn, audit_lock(draft.workspace_id))
    head = await conn.fetchrow("SELECT seq, hash FROM audit_log WHERE workspace_id = $1 "
                               "ORDER BY seq DESC LIMIT 1", draft.workspace_id)
    seq, prev = (int(head[0]) + 1, head[1]) if head else (1, GENESIS_HASH)
    document = audit_document(draft.workspace_id, seq, rfc3339_now(), draft.actor,
                              draft.action, draft.target, draft.before, after)
    body = canonical_bytes(document)
    digest = chain_hash(prev, body)
    await conn.execute(
        "INSERT INTO audit_log (workspace_id, seq, at, actor, action, target, body, "
        "prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        draft.workspace_id, seq, document["at"], draft.actor, draft.action, draft.target,
        body.decode(), prev, digest)
    return {**document, "prev_hash": prev, "hash": digest}


def audited(job: Job[T], draft: AuditDraft | None) -> Job[T]:
    """`job` followed, in the same savepoint, by its audit entry (none if it found nothing,
    i.e. returned None). `draft.after` sees the job's result."""
    if draft is None:
        return job

    async def run(conn: Conn) -> T:
        result = await job(conn)
        if result is not None:
            await append_audit(conn, draft,
                               draft.after(result) if draft.after is not None else None)
        return result

    return run


async def select_audit(conn: Conn, workspace_id: str, before_seq: int | None, limit: int
                       ) -> list[dict[str, Any]]:
    if before_seq is None:
        rows = await conn.fetch("SELECT body, prev_hash, hash FROM audit_log "
                                "WHERE workspace_id = $1 ORDER BY seq DESC LIMIT $2",
                                workspace_id, limit)
    else:
        rows = await conn.fetch("SELECT body, prev_hash, hash FROM audit_log "
                                "WHERE workspace_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                                workspace_id, before_seq, limit)
    return chained_documents(rows)


async def select_audit_chain(conn: Conn, workspace_id: str | None) -> list[dict[str, Any]]:
    order = 'ORDER BY workspace_id COLLATE "C", seq'
    if workspace_id is None:
        rows = await conn.fetch(f"SELECT body, prev_hash, hash FROM audit_log {order}")
    else:
        rows = await conn.fetch(f"SELECT body, prev_hash, hash FROM audit_log "
                                f"WHERE workspace_id = $1 {order}", workspace_id)
    return chained_documents(rows)


# ---- console sessions and login throttling ---------------------------------------------------


async def insert_session(conn: Conn, s: SessionRecord) -> SessionRecord:
    await conn.execute(f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({_placeholders(7)})",
                       *dataclasses.astuple(s))
    return s


async def select_session(conn: Conn, token_hash: str) -> SessionRecord | None:
    row = await conn.fetchrow(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE token_hash = $1",
                              token_hash)
    return SessionRecord(*row) if row else None


async def touch_session(conn: Conn, session_id: str, at: str) -> None:
    await conn.execute("UPDATE sessions SET last_seen_at = $1 WHERE id = $2", at, session_id)


async def revoke_session(conn: Conn, session_id: str, at: str) -> None:
    await conn.execute("UPDATE sessions SET revoked_at = $1 WHERE id = $2 "
                       "AND revoked_at IS NULL", at, session_id)


async def add_login_failure(conn: Conn, email: str, address: str, at: str) -> None:
    when = moment(at)
    cutoff = rfc3339(datetime.fromisoformat(when) - LOGIN_FAILURE_RETENTION)
    await conn.execute('DELETE FROM login_failures WHERE at COLLATE "C" < $1', cutoff)
    await conn.execute("INSERT INTO login_failures (email, address, at) VALUES ($1, $2, $3)",
                       email, address, when)


async def count_login_failures(conn: Conn, email: str, address: str, since: str
                               ) -> tuple[int, int]:
    start = moment(since)
    by_email = await conn.fetchval(
        'SELECT COUNT(*) FROM login_failures WHERE email = $1 AND at COLLATE "C" >= $2',
        email, start)
    by_address = await conn.fetchval(
        'SELECT COUNT(*) FROM login_failures WHERE address = $1 AND at COLLATE "C" >= $2',
        address, start)
    return int(by_email), int(by_address)


# ---- compliance packs ------------------------------------------------------------------------


async def install(conn: Conn, installation: PackInstallation, guardrail: GuardrailRecord,
                  policy: FirewallPolicyRecord) -> PackInstallation:
    await insert_guardrail(conn, guardrail)
    await insert_policy(conn, policy)
    await conn.execute(f"INSERT INTO pack_installations ({INSTALLATION_COLUMNS}) "
                       f"VALUES ({_placeholders(8)})", *dataclasses.astuple(installation))
    return installation


async def golive(conn: Conn, workspace_id: str, framework: str, promote_default: bool,
                 at: str) -> PackInstallation | None:
    row = await conn.fetchrow(f"SELECT {INSTALLATION_COLUMNS} FROM pack_installations "
                              "WHERE workspace_id = $1 AND framework = $2",
                              workspace_id, framework)
    if row is None:
        return None
    current = PackInstallation(*row)
    await update_guardrail(conn, current.guardrail_id, "enforce",
                           True if promote_default else None)
    await update_policy(conn, current.firewall_policy_id, None, "enforce", None)
    await conn.execute("UPDATE pack_installations SET state = 'live', live_at = $1 "
                       "WHERE workspace_id = $2 AND framework = $3", at, workspace_id, framework)
    return dataclasses.replace(current, state="live", live_at=at)


async def select_installations(conn: Conn, workspace_id: str) -> list[PackInstallation]:
    rows = await conn.fetch(f"SELECT {INSTALLATION_COLUMNS} FROM pack_installations "
                            'WHERE workspace_id = $1 ORDER BY installed_at COLLATE "C", '
                            'framework COLLATE "C"', workspace_id)
    return [PackInstallation(*r) for r in rows]


async def count_control_events(conn: Conn, workspace_id: str, plane: str,
                               owner: tuple[str, str], since: str
                               ) -> list[tuple[str | None, bool, str, int]]:
    field, value = owner
    if field not in EVENT_FILTERS:
        raise ValueError(f"cannot count events by {field!r}")
    rows = await conn.fetch(
        f"SELECT ({BODY_JSON} -> 'rule_id')::text, ({BODY_JSON} -> 'would_have')::text, "
        f"({BODY_JSON} -> 'outcome')::text, COUNT(*) FROM evidence_events "
        f"WHERE workspace_id = $1 AND plane = $2 AND {field_equals(field, 3)} "
        'AND at COLLATE "C" >= $4 GROUP BY 1, 2, 3', workspace_id, plane, json_text(value),
        moment(since))
    # The JSON values as SQLite's json_extract gives them: text as text, true/false as a
    # truth value, null or missing as None; groups that only differed in form merge.
    counts: Counter[tuple[Any, bool, Any]] = Counter()
    for rule, would, outcome, n in rows:
        counts[(_scalar(rule), bool(_scalar(would)), _scalar(outcome))] += int(n)
    return [(rule, would, outcome, n) for (rule, would, outcome), n in counts.items()]


def _scalar(json_text: str | None) -> Any:
    return None if json_text is None else orjson.loads(json_text)


# ---- signed reports, share links, residency ---------------------------------------------------


async def publish_keys(conn: Conn, pems: dict[str, str]) -> None:
    await conn.executemany(
        "INSERT INTO signing_keys (kid, public_pem, published_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (kid) DO NOTHING",
        [(kid, pem, rfc3339_now()) for kid, pem in sorted(pems.items())])


async def published_keys(conn: Conn) -> dict[str, str]:
    return {row[0]: row[1] for row in await conn.fetch("SELECT kid, public_pem FROM signing_keys")}


async def get_residency(conn: Conn, workspace_id: str) -> str | None:
    region: str | None = await conn.fetchval(
        "SELECT region FROM residency WHERE workspace_id = $1", workspace_id)
    return region


async def set_residency(conn: Conn, workspace_id: str, region: str | None) -> str:
    await conn.execute(
        "INSERT INTO residency (workspace_id, region, updated_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (workspace_id) DO UPDATE SET region = excluded.region, "
        "updated_at = excluded.updated_at", workspace_id, region, rfc3339_now())
    return region or ""  # never None, so the audited wrapper records the change


async def log_head(conn: Conn, workspace_id: str) -> dict[str, Any]:
    first, last, count = await conn.fetchrow(
        "SELECT MIN(seq), MAX(seq), COUNT(*) FROM evidence_events WHERE workspace_id = $1",
        workspace_id)
    head = None if last is None else await conn.fetchval(
        "SELECT hash FROM evidence_events WHERE workspace_id = $1 AND seq = $2",
        workspace_id, last)
    return {"first_seq": first or 0, "last_seq": last or 0, "events": int(count),
            "head_hash": head or GENESIS_HASH}


async def insert_report(conn: Conn, record: ReportRecord, files: dict[str, bytes]
                        ) -> ReportRecord:
    await conn.execute(f"INSERT INTO reports ({REPORT_COLUMNS}) VALUES ({_placeholders(9)})",
                       *dataclasses.astuple(record))
    await conn.executemany(
        "INSERT INTO report_files (region, report_id, name, data) VALUES ($1, $2, $3, $4)",
        [(partition(record.region), record.id, name, data) for name, data in files.items()])
    return record


async def select_reports(conn: Conn, workspace_id: str) -> list[ReportRecord]:
    rows = await conn.fetch(f"SELECT {REPORT_COLUMNS} FROM reports WHERE workspace_id = $1 "
                            'ORDER BY created_at COLLATE "C", id COLLATE "C"', workspace_id)
    return [ReportRecord(*r) for r in rows]


async def select_report(conn: Conn, report_id: str) -> ReportRecord | None:
    row = await conn.fetchrow(f"SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1", report_id)
    return ReportRecord(*row) if row else None


async def select_file(conn: Conn, report: ReportRecord, name: str) -> bytes | None:
    data = await conn.fetchval("SELECT data FROM report_files WHERE region = $1 "
                               "AND report_id = $2 AND name = $3",
                               partition(report.region), report.id, name)
    return None if data is None else bytes(data)


async def insert_share(conn: Conn, record: ShareRecord) -> ShareRecord:
    await conn.execute(f"INSERT INTO shares ({SHARE_COLUMNS}) VALUES ({_placeholders(6)})",
                       *dataclasses.astuple(record))
    return record


async def select_share(conn: Conn, column: str, value: str) -> ShareRecord | None:
    assert column in ("id", "token_hash")
    row = await conn.fetchrow(f"SELECT {SHARE_COLUMNS} FROM shares WHERE {column} = $1", value)
    return ShareRecord(*row) if row else None


async def revoke_share(conn: Conn, share_id: str, at: str) -> ShareRecord | None:
    status = await conn.execute("UPDATE shares SET revoked_at = $1 WHERE id = $2 "
                                "AND revoked_at IS NULL", at, share_id)
    return await select_share(conn, "id", share_id) if affected(status) else None
