"""The store interface every backend implements, its records, and `open_store(url)`.

Callers see only `Store`: async reads and async writes that go through the backend's one
writer path (group commit). Nothing here is called per request on the hot path: usage
is summed in memory and written in one batch per refresh interval (proxy/access.py).
A PostgreSQL backend implements the same protocol without touching callers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

Plan = Literal["free", "paid"]
Role = Literal["member", "admin"]
QuotaPeriod = Literal["day", "month", "total"]
PLANS: tuple[Plan, ...] = ("free", "paid")
ROLES: tuple[Role, ...] = ("member", "admin")
QUOTA_PERIODS: tuple[QuotaPeriod, ...] = ("day", "month", "total")


class StoreError(Exception):
    """The store could not do what was asked (unreachable, constraint, bad URL)."""


class Conflict(StoreError):
    """A uniqueness rule was broken (e.g. an email that exists)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SECOND_TEXT: list[Any] = [-1, ""]  # (unix second, its "%Y-%m-%dT%H:%M:%S" text)


def rfc3339_now() -> str:
    """`rfc3339(utc_now())` at a tenth of the cost (evidence events stamp every decision):
    the text of the current second is formatted once and reused."""
    now = time.time()
    second = int(now)
    if second != _SECOND_TEXT[0]:
        _SECOND_TEXT[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _SECOND_TEXT[0] = second
    return f"{_SECOND_TEXT[1]}.{int((now - second) * 1e6):06d}Z"


def new_id(prefix: str) -> str:
    # 80 random bits: ids are names, not secrets, but must never collide across replicas.
    return f"{prefix}_{secrets.token_hex(10)}"


GENESIS_HASH = "0" * 64


def chain_hash(prev_hash: str, document: bytes) -> str:
    """An event's hash commits to the previous event's hash and its own canonical bytes
    (orjson with sorted keys), so an edited, deleted or reordered event breaks the chain."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + document).hexdigest()


def quota_period_key(period: QuotaPeriod, moment: datetime) -> str:
    """The bucket a moment's usage counts towards: '2026-11-23', '2026-11' or 'total'."""
    moment = moment.astimezone(UTC)
    if period == "day":
        return moment.strftime("%Y-%m-%d")
    if period == "month":
        return moment.strftime("%Y-%m")
    return "total"


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    plan: Plan
    created_at: str


@dataclass(frozen=True)
class User:
    id: str
    email: str
    created_at: str


@dataclass(frozen=True)
class RelayKey:
    id: str
    workspace_id: str
    name: str
    key_hash: str  # SHA-256 hex of the whole secret; the secret itself is never stored
    prefix: str  # first characters of the secret, enough to recognise it in a list
    created_at: str
    revoked_at: str | None = None
    quota_tokens: int | None = None
    quota_period: QuotaPeriod | None = None
    guardrail_id: str | None = None


@dataclass(frozen=True)
class GuardrailRecord:
    id: str
    workspace_id: str
    name: str
    mode: str
    rules: list[dict[str, Any]]
    is_default: bool
    source: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class FirewallPolicyRecord:
    id: str
    workspace_id: str
    name: str
    mode: str  # "shadow" | "enforce"
    document: dict[str, Any]  # the policy as written: schema, default, combining, rules
    source: str  # "user" or "pack:<framework>"
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class PackInstallation:
    """A compliance pack installed in a workspace, and the two objects it materialised."""

    workspace_id: str
    framework: str
    version: str
    state: str  # "observe" until go-live, then "live"
    guardrail_id: str
    firewall_policy_id: str
    installed_at: str
    live_at: str | None = None


REGIONS = ("us", "eu", "uk", "ap", "cn", "global")


@dataclass(frozen=True)
class ReportRecord:
    id: str
    workspace_id: str
    framework: str
    format: str  # "pdf" | "json" | "csv"
    region: str | None  # the residency stamp at generation; None = unstamped
    created_at: str
    evidence_sha256: str
    content_sha256: str
    kid: str


@dataclass(frozen=True)
class ShareRecord:
    id: str
    workspace_id: str
    report_id: str
    token_hash: str  # SHA-256 of the share token; the token itself is never stored
    created_at: str
    revoked_at: str | None = None


@dataclass(frozen=True)
class SessionRecord:
    """A console session. The token itself is never stored, only its SHA-256."""

    id: str
    user_id: str
    token_hash: str
    created_at: str
    expires_at: str  # absolute end of the session
    last_seen_at: str  # for the idle timeout
    revoked_at: str | None = None


AUDIT_ACTIONS = (
    "pack.install", "pack.golive", "residency.update", "key.create", "key.update",
    "key.revoke", "guardrail.create", "guardrail.update", "firewall.create",
    "firewall.update", "report.generate", "share.create", "share.revoke", "session.login",
)


@dataclass(frozen=True)
class AuditDraft:
    """An audit-trail entry to append in the same transaction as the change it records.

    `after` turns the mutation's result into the recorded after-state (it is called
    inside the transaction, with the store method's return value); a mutation that
    returns None (nothing found) writes no entry.
    """

    workspace_id: str
    actor: str  # "user:<id>", "cli" or "system"
    action: str  # one of AUDIT_ACTIONS
    target: str  # the changed object's id
    before: dict[str, Any] | None = None
    after: Callable[[Any], dict[str, Any] | None] | None = None


@dataclass(frozen=True)
class UsageDelta:
    key_id: str
    period: str  # bucket from quota_period_key
    tokens: int


class Store(Protocol):
    url: str
    # Called with the number of records in a group that failed to commit (for metrics).
    on_write_failure: Callable[[int], None] | None

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def flush(self) -> None:
        """Return once everything enqueued before the call is committed."""

    async def schema_version(self) -> int: ...
    async def state_version(self) -> int:
        """A counter bumped by every change to keys or workspaces, for cache refresh."""

    async def is_empty(self) -> bool: ...
    def exclusive(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Held by one process at a time of all that share this store (replicas starting
        together must bootstrap an empty store once)."""

    async def create_workspace(self, name: str, plan: Plan) -> Workspace: ...
    async def get_workspace(self, workspace_id: str) -> Workspace | None: ...
    async def list_workspaces(self) -> list[Workspace]: ...

    async def create_user(self, email: str, password_hash: str) -> User: ...
    async def get_user_by_email(self, email: str) -> tuple[User, str] | None: ...
    async def add_membership(self, user_id: str, workspace_id: str, role: Role) -> None: ...
    async def memberships(self, user_id: str) -> list[tuple[str, Role]]: ...

    async def get_user(self, user_id: str) -> User | None: ...

    # Every mutation below takes `audit`: the entry is appended to the workspace's audit
    # chain in the same transaction as the change (or not at all, if it fails).
    async def create_key(self, key: RelayKey, *, audit: AuditDraft | None = None) -> RelayKey: ...
    async def get_key(self, key_id: str) -> RelayKey | None: ...
    async def list_keys(self, workspace_id: str) -> list[RelayKey]: ...
    async def revoke_key(
        self, key_id: str, *, audit: AuditDraft | None = None
    ) -> RelayKey | None: ...
    async def update_key(
        self,
        key_id: str,
        *,
        name: str | None = None,
        quota: tuple[int | None, QuotaPeriod | None] | None = None,
        guardrail_id: tuple[str | None] | None = None,
        audit: AuditDraft | None = None,
    ) -> RelayKey | None:
        """Change what is given: `quota` = (tokens, period), both None to remove it;
        `guardrail_id` = (id,) or (None,) to fall back to the workspace default."""
    async def active_keys(self) -> list[RelayKey]: ...

    async def add_usage(self, deltas: Sequence[UsageDelta]) -> None:
        """Add tokens to each (key, period) bucket, in one write."""

    async def create_guardrail(
        self, record: GuardrailRecord, *, audit: AuditDraft | None = None
    ) -> GuardrailRecord: ...
    async def list_guardrails(self, workspace_id: str | None = None) -> list[GuardrailRecord]:
        """One workspace's guardrails, or every workspace's when None."""

    async def update_guardrail(
        self, guardrail_id: str, *, mode: str | None = None, is_default: bool | None = None,
        name: str | None = None, rules: list[dict[str, Any]] | None = None,
        audit: AuditDraft | None = None,
    ) -> GuardrailRecord | None: ...
    async def create_firewall_policy(
        self, record: FirewallPolicyRecord, *, audit: AuditDraft | None = None
    ) -> FirewallPolicyRecord: ...
    async def list_firewall_policies(
        self, workspace_id: str | None = None
    ) -> list[FirewallPolicyRecord]:
        """One workspace's firewall policies, or every workspace's when None."""

    async def update_firewall_policy(
        self, policy_id: str, *, name: str | None = None, mode: str | None = None,
        document: dict[str, Any] | None = None, audit: AuditDraft | None = None,
    ) -> FirewallPolicyRecord | None: ...
    async def workspace_hmac_keys(self) -> dict[str, bytes]:
        """Every workspace's evidence HMAC key, creating the missing ones."""

    def append_events(self, events: Sequence[Any]) -> asyncio.Future[None]:
        """Queue evidence events now; the future resolves once they are committed (each
        with its per-workspace seq and chain hash)."""

    async def list_events(
        self, workspace_id: str, plane: str, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]: ...

    async def query_events(
        self, workspace_id: str, plane: str, *, filters: dict[str, str] | None = None,
        since: str | None = None, until: str | None = None, before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """A feed page, newest first: events with seq < before_seq (all if None) whose
        top-level fields equal `filters` and whose `at` is in [since, until)."""

    async def count_control_events(
        self, workspace_id: str, plane: str, owner: tuple[str, str], since: str
    ) -> list[tuple[str | None, bool, str, int]]:
        """(rule_id, would_have, outcome, count) of the events at or after `since` whose
        `owner` field (e.g. ("guardrail_id", id)) has that value: readiness counts."""

    # ---- compliance packs -------------------------------------------------------------

    async def install_pack(
        self, installation: PackInstallation, guardrail: GuardrailRecord,
        policy: FirewallPolicyRecord, *, audit: AuditDraft,
    ) -> PackInstallation:
        """The guardrail, the firewall policy, the installation and its audit entry in one
        transaction; Conflict when the framework is installed in the workspace already."""

    async def golive_pack(
        self, workspace_id: str, framework: str, *, promote_default: bool, at: str,
        audit: AuditDraft,
    ) -> PackInstallation | None:
        """Guardrail and policy to enforce (and the guardrail to workspace default when
        asked), the installation to live, and the audit entry, in one transaction."""

    async def list_installations(self, workspace_id: str) -> list[PackInstallation]: ...

    # ---- signed reports, share links, residency ----------------------------------------

    async def publish_public_keys(self, pems: dict[str, str]) -> None:
        """Record report-signing public keys (kid → PEM) not recorded yet, so every
        replica can serve and check reports signed by any key ever used."""

    async def published_public_keys(self) -> dict[str, str]: ...
    async def get_residency(self, workspace_id: str) -> str | None: ...
    async def set_residency(
        self, workspace_id: str, region: str | None, *, audit: AuditDraft
    ) -> str | None: ...
    async def evidence_log_head(self, workspace_id: str) -> dict[str, Any]:
        """{"first_seq", "last_seq", "head_hash", "events"} of the workspace's chain."""

    async def create_report(
        self, record: ReportRecord, files: dict[str, bytes], *, audit: AuditDraft
    ) -> ReportRecord:
        """The report and its files (in the partition of its region) in one transaction."""

    async def list_reports(self, workspace_id: str) -> list[ReportRecord]: ...
    async def get_report(self, report_id: str) -> ReportRecord | None: ...
    async def report_file(self, report: ReportRecord, name: str) -> bytes | None: ...
    async def create_share(self, record: ShareRecord, *, audit: AuditDraft) -> ShareRecord: ...
    async def get_share(self, share_id: str) -> ShareRecord | None: ...
    async def share_by_token(self, token_hash: str) -> ShareRecord | None: ...
    async def revoke_share(
        self, share_id: str, at: str, *, audit: AuditDraft
    ) -> ShareRecord | None: ...

    # ---- console sessions, login throttling, audit trail -------------------------------

    async def create_session(self, record: SessionRecord) -> SessionRecord: ...
    async def get_session(self, token_hash: str) -> SessionRecord | None: ...
    async def touch_session(self, session_id: str, at: str) -> None: ...
    async def revoke_session(self, session_id: str, at: str) -> None: ...
    async def add_login_failure(self, email: str, address: str, at: str) -> None: ...
    async def count_login_failures(self, email: str, address: str, since: str) -> tuple[int, int]:
        """(failures for this account, failures from this address) at or after `since`."""

    async def append_audit(self, draft: AuditDraft) -> dict[str, Any]:
        """A standalone entry (e.g. session.login); returns it with seq and hashes."""

    async def list_audit(
        self, workspace_id: str, *, before_seq: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Entries newest first: seq, at, actor, action, target, before, after,
        prev_hash, hash."""

    async def audit_chain(self, workspace_id: str | None = None) -> list[dict[str, Any]]:
        """Every entry (of one workspace or all), oldest first per workspace, as stored:
        for verification."""

    def queue_depth(self) -> int:
        """Writes waiting for the next group commit."""

    async def usage(self, buckets: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Committed tokens per (key_id, period bucket)."""


def open_store(url: str) -> Store:
    """The backend named by the URL's scheme; call `await store.open()` next."""
    if url.startswith("sqlite:///"):
        from relay.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from relay.store.postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(
        f"ORCA_DATABASE_URL: unsupported scheme in {url!r} (sqlite:///PATH or postgresql://…)"
    )
