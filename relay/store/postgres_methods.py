"""PostgresStore's methods for controls (keys, guardrails, firewall policies), the console
(evidence feed, sessions, login throttling, audit trail), compliance packs and reports:
the same mixins as sqlite_methods.py, over the asyncpg jobs of postgres_jobs /
postgres_console. Writes go through the store's group-commit writer (`_write`), naming
the chain locks they will take so the writer can take them first, in one order; reads
run on a pooled connection (`_read`)."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from relay.store import postgres_console as pc
from relay.store import postgres_jobs as pj
from relay.store.base import (
    AuditDraft,
    FirewallPolicyRecord,
    GuardrailRecord,
    PackInstallation,
    QuotaPeriod,
    RelayKey,
    ReportRecord,
    SessionRecord,
    ShareRecord,
    UsageDelta,
)
from relay.store.postgres_jobs import Job

T = TypeVar("T")


# Row locks taken in different orders by two replicas' groups would deadlock (PostgreSQL
# breaks the tie after deadlock_timeout, the writer runs the group again): writes to
# shared rows name a lock the writer takes first, in key order, so groups queue instead.
STATE = (pj.STATE_LOCK,)  # the meta row every control change bumps, and the control rows
USAGE = ("usage",)
SESSIONS = ("sessions",)
LOGINS = ("login-failures",)


def _locks(audit: AuditDraft | None) -> tuple[str, ...]:
    return () if audit is None else (pj.audit_lock(audit.workspace_id),)


class _Jobs(abc.ABC):
    """What the mixins need from PostgresStore: its writer and its pool."""

    @abc.abstractmethod
    async def _write(self, job: Job[T], locks: tuple[str, ...] = ()) -> T: ...

    @abc.abstractmethod
    async def _read(self, job: Job[T]) -> T: ...

    async def _audited(self, job: Job[T], audit: AuditDraft | None,
                       locks: tuple[str, ...] = STATE) -> T:
        return await self._write(pc.audited(job, audit), locks + _locks(audit))


class ControlMethods(_Jobs):
    async def create_key(self, key: RelayKey, *, audit: AuditDraft | None = None) -> RelayKey:
        return await self._audited(lambda c: pj.insert_key(c, key), audit)

    async def get_key(self, key_id: str) -> RelayKey | None:
        return await self._read(lambda c: pj.select_key(c, key_id))

    async def list_keys(self, workspace_id: str) -> list[RelayKey]:
        return await self._read(lambda c: pj.select_keys(c, workspace_id))

    async def revoke_key(
        self, key_id: str, *, audit: AuditDraft | None = None
    ) -> RelayKey | None:
        return await self._audited(lambda c: pj.revoke_key(c, key_id), audit)

    async def update_key(
        self, key_id: str, *, name: str | None = None,
        quota: tuple[int | None, QuotaPeriod | None] | None = None,
        guardrail_id: tuple[str | None] | None = None, audit: AuditDraft | None = None,
    ) -> RelayKey | None:
        return await self._audited(
            lambda c: pj.update_key(c, key_id, name, quota, guardrail_id), audit)

    async def active_keys(self) -> list[RelayKey]:
        return await self._read(lambda c: pj.select_keys(c))

    async def add_usage(self, deltas: Sequence[UsageDelta]) -> None:
        batch = list(deltas)
        await self._write(lambda c: pj.add_usage(c, batch), USAGE)

    async def usage(self, buckets: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        wanted = list(buckets)
        return await self._read(lambda c: pj.select_usage(c, wanted))

    async def create_guardrail(
        self, record: GuardrailRecord, *, audit: AuditDraft | None = None
    ) -> GuardrailRecord:
        return await self._audited(lambda c: pj.insert_guardrail(c, record), audit)

    async def list_guardrails(self, workspace_id: str | None = None) -> list[GuardrailRecord]:
        return await self._read(lambda c: pj.select_guardrails(c, workspace_id))

    async def update_guardrail(
        self, guardrail_id: str, *, mode: str | None = None, is_default: bool | None = None,
        name: str | None = None, rules: list[dict[str, Any]] | None = None,
        audit: AuditDraft | None = None,
    ) -> GuardrailRecord | None:
        return await self._audited(
            lambda c: pj.update_guardrail(c, guardrail_id, mode, is_default, name, rules), audit)

    async def create_firewall_policy(
        self, record: FirewallPolicyRecord, *, audit: AuditDraft | None = None
    ) -> FirewallPolicyRecord:
        return await self._audited(lambda c: pj.insert_policy(c, record), audit)

    async def list_firewall_policies(
        self, workspace_id: str | None = None
    ) -> list[FirewallPolicyRecord]:
        return await self._read(lambda c: pj.select_policies(c, workspace_id))

    async def update_firewall_policy(
        self, policy_id: str, *, name: str | None = None, mode: str | None = None,
        document: dict[str, Any] | None = None, audit: AuditDraft | None = None,
    ) -> FirewallPolicyRecord | None:
        return await self._audited(
            lambda c: pj.update_policy(c, policy_id, name, mode, document), audit)


class ConsoleMethods(_Jobs):
    async def query_events(
        self, workspace_id: str, plane: str, *, filters: dict[str, str] | None = None,
        since: str | None = None, until: str | None = None, before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        return await self._read(lambda c: pj.query_events(
            c, workspace_id, plane, filters or {}, since, until, before_seq, limit))

    async def create_session(self, record: SessionRecord) -> SessionRecord:
        return await self._write(lambda c: pc.insert_session(c, record), SESSIONS)

    async def get_session(self, token_hash: str) -> SessionRecord | None:
        return await self._read(lambda c: pc.select_session(c, token_hash))

    async def touch_session(self, session_id: str, at: str) -> None:
        await self._write(lambda c: pc.touch_session(c, session_id, at), SESSIONS)

    async def revoke_session(self, session_id: str, at: str) -> None:
        await self._write(lambda c: pc.revoke_session(c, session_id, at), SESSIONS)

    async def add_login_failure(self, email: str, address: str, at: str) -> None:
        await self._write(lambda c: pc.add_login_failure(c, email, address, at), LOGINS)

    async def count_login_failures(self, email: str, address: str, since: str) -> tuple[int, int]:
        return await self._read(lambda c: pc.count_login_failures(c, email, address, since))

    async def append_audit(self, draft: AuditDraft) -> dict[str, Any]:
        # No mutation result to record: `draft.after`, if set, is called with None.
        return await self._write(lambda c: pc.append_audit(
            c, draft, None if draft.after is None else draft.after(None)), _locks(draft))

    async def list_audit(
        self, workspace_id: str, *, before_seq: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return await self._read(lambda c: pc.select_audit(c, workspace_id, before_seq, limit))

    async def audit_chain(self, workspace_id: str | None = None) -> list[dict[str, Any]]:
        return await self._read(lambda c: pc.select_audit_chain(c, workspace_id))


class PackMethods(_Jobs):
    async def install_pack(
        self, installation: PackInstallation, guardrail: GuardrailRecord,
        policy: FirewallPolicyRecord, *, audit: AuditDraft,
    ) -> PackInstallation:
        return await self._audited(
            lambda c: pc.install(c, installation, guardrail, policy), audit)

    async def golive_pack(
        self, workspace_id: str, framework: str, *, promote_default: bool, at: str,
        audit: AuditDraft,
    ) -> PackInstallation | None:
        return await self._audited(
            lambda c: pc.golive(c, workspace_id, framework, promote_default, at), audit)

    async def list_installations(self, workspace_id: str) -> list[PackInstallation]:
        return await self._read(lambda c: pc.select_installations(c, workspace_id))

    async def count_control_events(
        self, workspace_id: str, plane: str, owner: tuple[str, str], since: str
    ) -> list[tuple[str | None, bool, str, int]]:
        return await self._read(
            lambda c: pc.count_control_events(c, workspace_id, plane, owner, since))


class ReportMethods(_Jobs):
    async def publish_public_keys(self, pems: dict[str, str]) -> None:
        await self._write(lambda c: pc.publish_keys(c, pems))

    async def published_public_keys(self) -> dict[str, str]:
        return await self._read(pc.published_keys)

    async def get_residency(self, workspace_id: str) -> str | None:
        return await self._read(lambda c: pc.get_residency(c, workspace_id))

    async def set_residency(
        self, workspace_id: str, region: str | None, *, audit: AuditDraft
    ) -> str | None:
        await self._audited(lambda c: pc.set_residency(c, workspace_id, region), audit, ())
        return region

    async def evidence_log_head(self, workspace_id: str) -> dict[str, Any]:
        return await self._read(lambda c: pc.log_head(c, workspace_id))

    async def create_report(
        self, record: ReportRecord, files: dict[str, bytes], *, audit: AuditDraft
    ) -> ReportRecord:
        return await self._audited(lambda c: pc.insert_report(c, record, files), audit, ())

    async def list_reports(self, workspace_id: str) -> list[ReportRecord]:
        return await self._read(lambda c: pc.select_reports(c, workspace_id))

    async def get_report(self, report_id: str) -> ReportRecord | None:
        return await self._read(lambda c: pc.select_report(c, report_id))

    async def report_file(self, report: ReportRecord, name: str) -> bytes | None:
        return await self._read(lambda c: pc.select_file(c, report, name))

    async def create_share(self, record: ShareRecord, *, audit: AuditDraft) -> ShareRecord:
        return await self._audited(lambda c: pc.insert_share(c, record), audit, ())

    async def get_share(self, share_id: str) -> ShareRecord | None:
        return await self._read(lambda c: pc.select_share(c, "id", share_id))

    async def share_by_token(self, token_hash: str) -> ShareRecord | None:
        return await self._read(lambda c: pc.select_share(c, "token_hash", token_hash))

    async def revoke_share(
        self, share_id: str, at: str, *, audit: AuditDraft
    ) -> ShareRecord | None:
        return await self._audited(lambda c: pc.revoke_share(c, share_id, at), audit, ())
