"""PostgreSQL jobs for keys, usage, guardrails, firewall policies and the evidence chain:
the asyncpg counterparts of sqlite_keys / sqlite_evidence / sqlite_firewall, with the same
results row for row (the audit trail's jobs are in postgres_console).

Each job is `async def job(conn, ...)` and runs on the store's writer connection inside
the group-commit transaction, or on a pooled connection for reads. Chains are sequenced
under a transaction-level advisory lock per workspace and chain (`chain_lock`), taken
before the chain head is read, so `seq` stays gapless and `prev_hash` is the previous
hash even with several replicas writing one workspace at once.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson

from relay.store.base import (
    GENESIS_HASH,
    FirewallPolicyRecord,
    GuardrailRecord,
    QuotaPeriod,
    RelayKey,
    UsageDelta,
    chain_hash,
    rfc3339,
    utc_now,
)
from relay.store.changes import guardrail_changes, key_changes, policy_changes
from relay.store.sqlite_admin import chained_documents, moment
from relay.store.sqlite_evidence import EVENT_FILTERS

T = TypeVar("T")
Conn = Any  # asyncpg.Connection (asyncpg ships no type information)
Job = Callable[[Conn], Awaitable[T]]

KEY_COLUMNS = ("id, workspace_id, name, key_hash, prefix, created_at, revoked_at, "
               "quota_tokens, quota_period, guardrail_id")
GUARDRAIL_COLUMNS = ("id, workspace_id, name, mode, rules, is_default, source, created_at, "
                     "updated_at")
POLICY_COLUMNS = "id, workspace_id, name, mode, document, source, created_at, updated_at"


STATE_LOCK = "state"  # taken by every write that bumps meta.state_version


def lock_key(name: str) -> int:
    """The signed 64-bit advisory-lock key of a lock name ('evidence:<ws>', 'audit:<ws>')."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def evidence_lock(workspace_id: str) -> str:
    return f"evidence:{workspace_id}"


def audit_lock(workspace_id: str) -> str:
    return f"audit:{workspace_id}"


async def chain_lock(conn: Conn, name: str) -> None:
    """Hold the chain's lock until the transaction ends (re-entrant: the writer may have
    taken it already, in key order, before running the group's jobs)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1::bigint)", lock_key(name))


def affected(status: str) -> int:
    """The row count of an asyncpg status string such as 'UPDATE 1'."""
    return int(status.rsplit(" ", 1)[-1])


async def bump_state(conn: Conn) -> None:
    await conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'state_version'")


# ---- relay keys and usage -----------------------------------------------------------------


async def insert_key(conn: Conn, key: RelayKey) -> RelayKey:
    await conn.execute(
        f"INSERT INTO relay_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
        "$10)", key.id, key.workspace_id, key.name, key.key_hash, key.prefix, key.created_at,
        key.revoked_at, key.quota_tokens, key.quota_period, key.guardrail_id)
    await bump_state(conn)
    return key


async def select_key(conn: Conn, key_id: str) -> RelayKey | None:
    row = await conn.fetchrow(f"SELECT {KEY_COLUMNS} FROM relay_keys WHERE id = $1", key_id)
    return RelayKey(*row) if row else None


async def select_keys(conn: Conn, workspace_id: str | None = None) -> list[RelayKey]:
    """One workspace's keys (revoked included), or every workspace's active keys."""
    if workspace_id is not None:
        rows = await conn.fetch(
            f"SELECT {KEY_COLUMNS} FROM relay_keys WHERE workspace_id = $1 "
            'ORDER BY created_at COLLATE "C", id COLLATE "C"', workspace_id)
    else:
        rows = await conn.fetch(f"SELECT {KEY_COLUMNS} FROM relay_keys WHERE revoked_at IS NULL")
    return [RelayKey(*r) for r in rows]


async def revoke_key(conn: Conn, key_id: str) -> RelayKey | None:
    await conn.execute("UPDATE relay_keys SET revoked_at = $1 WHERE id = $2 "
                       "AND revoked_at IS NULL", rfc3339(utc_now()), key_id)
    await bump_state(conn)
    return await select_key(conn, key_id)


async def update_key(
    conn: Conn, key_id: str, name: str | None,
    quota: tuple[int | None, QuotaPeriod | None] | None, guardrail_id: tuple[str | None] | None,
) -> RelayKey | None:
    sets = key_changes(name, quota, guardrail_id)
    if sets:
        status = await conn.execute(
            f"UPDATE relay_keys SET {_assignments(sets)} WHERE id = ${len(sets) + 1}",
            *sets.values(), key_id)
        if affected(status) == 0:
            return None
        await bump_state(conn)
    return await select_key(conn, key_id)


def _assignments(sets: dict[str, Any]) -> str:
    return ", ".join(f"{column} = ${n}" for n, column in enumerate(sets, 1))


async def add_usage(conn: Conn, deltas: Sequence[UsageDelta]) -> None:
    # Rows in one order, so two replicas adding to the same buckets cannot deadlock.
    rows = sorted((d.key_id, d.period, d.tokens) for d in deltas)
    await conn.executemany(
        "INSERT INTO usage (key_id, period, tokens) VALUES ($1, $2, $3) "
        "ON CONFLICT (key_id, period) DO UPDATE SET tokens = usage.tokens + excluded.tokens",
        rows)


async def select_usage(
    conn: Conn, buckets: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = dict.fromkeys(buckets, 0)
    if not buckets:
        return found
    rows = await conn.fetch(
        "SELECT u.key_id, u.period, u.tokens FROM usage u "
        "JOIN unnest($1::text[], $2::text[]) AS b(key_id, period) "
        "ON u.key_id = b.key_id AND u.period = b.period",
        [k for k, _ in buckets], [p for _, p in buckets])
    for key_id, period, tokens in rows:
        found[(key_id, period)] = int(tokens)
    return found


# ---- guardrails and firewall policies -------------------------------------------------------


def _guardrail(row: Any) -> GuardrailRecord:
    return GuardrailRecord(row[0], row[1], row[2], row[3], orjson.loads(row[4]), bool(row[5]),
                           row[6], row[7], row[8])


def _policy(row: Any) -> FirewallPolicyRecord:
    return FirewallPolicyRecord(row[0], row[1], row[2], row[3], orjson.loads(row[4]), row[5],
                                row[6], row[7])


async def insert_guardrail(conn: Conn, g: GuardrailRecord) -> GuardrailRecord:
    if g.is_default:
        await conn.execute("UPDATE guardrails SET is_default = 0 WHERE workspace_id = $1",
                           g.workspace_id)
    await conn.execute(
        f"INSERT INTO guardrails ({GUARDRAIL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
        "$9)", g.id, g.workspace_id, g.name, g.mode, orjson.dumps(g.rules).decode(),
        int(g.is_default), g.source, g.created_at, g.updated_at)
    await bump_state(conn)
    return g


async def select_guardrails(conn: Conn, workspace_id: str | None) -> list[GuardrailRecord]:
    order = 'ORDER BY created_at COLLATE "C", id COLLATE "C"'
    if workspace_id is None:
        rows = await conn.fetch(f"SELECT {GUARDRAIL_COLUMNS} FROM guardrails {order}")
    else:
        rows = await conn.fetch(
            f"SELECT {GUARDRAIL_COLUMNS} FROM guardrails WHERE workspace_id = $1 {order}",
            workspace_id)
    return [_guardrail(r) for r in rows]


async def update_guardrail(
    conn: Conn, guardrail_id: str, mode: str | None, is_default: bool | None,
    name: str | None = None, rules: list[dict[str, Any]] | None = None,
) -> GuardrailRecord | None:
    select = f"SELECT {GUARDRAIL_COLUMNS} FROM guardrails WHERE id = $1"
    row = await conn.fetchrow(select, guardrail_id)
    if row is None:
        return None
    sets = guardrail_changes(name, mode, is_default, rules)
    if is_default:
        await conn.execute("UPDATE guardrails SET is_default = 0 WHERE workspace_id = $1", row[1])
    await conn.execute(f"UPDATE guardrails SET {_assignments(sets)} WHERE id = ${len(sets) + 1}",
                       *sets.values(), guardrail_id)
    await bump_state(conn)
    return _guardrail(await conn.fetchrow(select, guardrail_id))


async def insert_policy(conn: Conn, p: FirewallPolicyRecord) -> FirewallPolicyRecord:
    await conn.execute(
        f"INSERT INTO firewall_policies ({POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, "
        "$8)", p.id, p.workspace_id, p.name, p.mode, orjson.dumps(p.document).decode(),
        p.source, p.created_at, p.updated_at)
    await bump_state(conn)
    return p


async def select_policies(conn: Conn, workspace_id: str | None) -> list[FirewallPolicyRecord]:
    order = 'ORDER BY created_at COLLATE "C", id COLLATE "C"'
    if workspace_id:
        rows = await conn.fetch(f"SELECT {POLICY_COLUMNS} FROM firewall_policies "
                                f"WHERE workspace_id = $1 {order}", workspace_id)
    else:
        rows = await conn.fetch(f"SELECT {POLICY_COLUMNS} FROM firewall_policies {order}")
    return [_policy(r) for r in rows]


async def update_policy(
    conn: Conn, policy_id: str, name: str | None, mode: str | None,
    document: dict[str, Any] | None,
) -> FirewallPolicyRecord | None:
    sets = policy_changes(name, mode, document)
    status = await conn.execute(
        f"UPDATE firewall_policies SET {_assignments(sets)} WHERE id = ${len(sets) + 1}",
        *sets.values(), policy_id)
    if affected(status) == 0:
        return None
    await bump_state(conn)
    return _policy(await conn.fetchrow(
        f"SELECT {POLICY_COLUMNS} FROM firewall_policies WHERE id = $1", policy_id))


# ---- workspace HMAC keys and the evidence chain ---------------------------------------------


async def ensure_hmac_keys(conn: Conn) -> dict[str, bytes]:
    missing = await conn.fetch(
        "SELECT id FROM workspaces WHERE id NOT IN (SELECT workspace_id FROM workspace_secrets) "
        'ORDER BY id COLLATE "C"')
    # Another replica may create the same workspace's key at once: the first one wins.
    await conn.executemany(
        "INSERT INTO workspace_secrets (workspace_id, hmac_key) VALUES ($1, $2) "
        "ON CONFLICT (workspace_id) DO NOTHING",
        [(r[0], secrets.token_hex(32)) for r in missing])
    rows = await conn.fetch("SELECT workspace_id, hmac_key FROM workspace_secrets")
    return {r[0]: bytes.fromhex(r[1]) for r in rows}


async def append_events(conn: Conn, events: Sequence[Any]) -> None:
    workspaces = sorted({event.workspace_id for event in events})
    heads: dict[str, tuple[int, str]] = {}
    for ws in workspaces:  # locks in key order: the writer's order, no deadlock
        await chain_lock(conn, evidence_lock(ws))
        row = await conn.fetchrow("SELECT seq, hash FROM evidence_events WHERE workspace_id = $1 "
                                  "ORDER BY seq DESC LIMIT 1", ws)
        heads[ws] = (int(row[0]), row[1]) if row else (0, GENESIS_HASH)
    rows = []
    for event in events:
        ws = event.workspace_id
        seq, prev = heads[ws]
        seq += 1
        body = orjson.dumps({**event.document(), "seq": seq}, option=orjson.OPT_SORT_KEYS)
        digest = chain_hash(prev, body)
        heads[ws] = (seq, digest)
        rows.append((ws, seq, event.id, event.at, event.plane, event.request_id, event.key_id,
                     body.decode(), prev, digest))
    await conn.executemany(
        "INSERT INTO evidence_events (workspace_id, seq, id, at, plane, request_id, key_id, "
        "body, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", rows)


async def select_events(
    conn: Conn, workspace_id: str, plane: str, after_seq: int, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT body, prev_hash, hash FROM evidence_events WHERE workspace_id = $1 "
        "AND plane = $2 AND seq > $3 ORDER BY seq LIMIT $4", workspace_id, plane, after_seq,
        limit)
    return chained_documents(rows)


# The body as json. PostgreSQL refuses a JSON document with a \u0000 escape anywhere in it
# (text cannot hold NUL), which would fail a whole feed query over one event whose field
# held a NUL: such escapes (not escaped backslashes followed by "u0000") read as U+FFFD.
BODY_JSON = ("(CASE WHEN strpos(body, '\\u0000') = 0 THEN body ELSE regexp_replace("
             "body, '(?<!\\\\)((?:\\\\\\\\)*)\\\\u0000', '\\1\\\\ufffd', 'g') "
             "END)::json")


def field_equals(name: str, param: int) -> str:
    """SQL: the body's top-level field `name` is the value whose JSON text (`json_text`)
    is parameter `param`. The stored JSON is orjson's, so one value has one text, and a
    text never equals a boolean, number or null (as with SQLite's json_extract). `name`
    must be whitelisted: it is put into the SQL."""
    return f"(({BODY_JSON} -> '{name}')::text = ${param})"


def json_text(value: Any) -> str:
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")  # as BODY_JSON reads the stored one
    return orjson.dumps(value).decode()


async def query_events(
    conn: Conn, workspace_id: str, plane: str, filters: dict[str, str],
    since: str | None, until: str | None, before_seq: int | None, limit: int,
) -> list[dict[str, Any]]:
    """Newest first; the same filters, bounds and errors as sqlite_evidence.query_events."""
    clauses = ["workspace_id = $1", "plane = $2"]
    params: list[Any] = [workspace_id, plane]
    for name, value in sorted(filters.items()):
        if name not in EVENT_FILTERS:
            raise ValueError(f"cannot filter events on {name!r}")
        params.append(json_text(value))
        clauses.append(field_equals(name, len(params)))
    bounds: list[tuple[str, Any]] = [
        ("seq < ${}", before_seq),
        ('at COLLATE "C" >= ${}', None if since is None else moment(since)),
        ('at COLLATE "C" < ${}', None if until is None else moment(until)),
    ]
    for clause, value in bounds:
        if value is not None:
            params.append(value)
            clauses.append(clause.format(len(params)))
    rows = await conn.fetch(
        f"SELECT body, prev_hash, hash FROM evidence_events WHERE {' AND '.join(clauses)} "
        f"ORDER BY seq DESC LIMIT ${len(params) + 1}", *params, limit)
    return chained_documents(rows)
