"""SQLiteStore's methods for controls (keys, guardrails, firewall policies) and for the
console (evidence feed, sessions, login throttling, audit trail), kept apart so sqlite.py
stays about the writer. Each delegates to a job of sqlite_keys / sqlite_evidence /
sqlite_firewall / sqlite_admin run on the store's writer or reader thread; a mutation
given an AuditDraft runs as `adm.audited(job, audit)`, one job with its audit entry."""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from relay.store import sqlite_admin as adm
from relay.store import sqlite_evidence as ev
from relay.store import sqlite_firewall as fw
from relay.store import sqlite_keys as kq
from relay.store import sqlite_packs as pk
from relay.store import sqlite_reports as rp
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

T = TypeVar("T")


class _Jobs(abc.ABC):
    """What the mixins need from SQLiteStore: its writer and reader threads."""

    @abc.abstractmethod
    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T: ...

    @abc.abstractmethod
    async def _read(self, job: Callable[[sqlite3.Connection], T]) -> T: ...


class ControlMethods(_Jobs):
    async def create_key(self, key: RelayKey, *, audit: AuditDraft | None = None) -> RelayKey:
        return await self._write(adm.audited(lambda c: kq.insert_key(c, key), audit))

    async def get_key(self, key_id: str) -> RelayKey | None:
        return await self._read(lambda c: kq.select_key(c, key_id))

    async def list_keys(self, workspace_id: str) -> list[RelayKey]:
        return await self._read(lambda c: kq.select_keys(c, workspace_id=workspace_id))

    async def revoke_key(
        self, key_id: str, *, audit: AuditDraft | None = None
    ) -> RelayKey | None:
        return await self._write(adm.audited(lambda c: kq.revoke_key(c, key_id), audit))

    async def update_key(
        self, key_id: str, *, name: str | None = None,
        quota: tuple[int | None, QuotaPeriod | None] | None = None,
        guardrail_id: tuple[str | None] | None = None, audit: AuditDraft | None = None,
    ) -> RelayKey | None:
        return await self._write(adm.audited(
            lambda c: kq.update_key(c, key_id, name, quota, guardrail_id), audit))

    async def active_keys(self) -> list[RelayKey]:
        return await self._read(lambda c: kq.select_keys(c))

    async def add_usage(self, deltas: Sequence[UsageDelta]) -> None:
        await self._write(lambda c: kq.add_usage(c, deltas))

    async def usage(self, buckets: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        wanted = list(buckets)
        return await self._read(lambda c: kq.select_usage(c, wanted))

    async def create_guardrail(
        self, record: GuardrailRecord, *, audit: AuditDraft | None = None
    ) -> GuardrailRecord:
        return await self._write(adm.audited(lambda c: ev.insert_guardrail(c, record), audit))

    async def list_guardrails(self, workspace_id: str | None = None) -> list[GuardrailRecord]:
        return await self._read(lambda c: ev.select_guardrails(c, workspace_id))

    async def update_guardrail(
        self, guardrail_id: str, *, mode: str | None = None, is_default: bool | None = None,
        name: str | None = None, rules: list[dict[str, Any]] | None = None,
        audit: AuditDraft | None = None,
    ) -> GuardrailRecord | None:
        return await self._write(adm.audited(
            lambda c: ev.update_guardrail(c, guardrail_id, mode, is_default, name, rules), audit))

    async def create_firewall_policy(
        self, record: FirewallPolicyRecord, *, audit: AuditDraft | None = None
    ) -> FirewallPolicyRecord:
        return await self._write(adm.audited(lambda c: fw.insert_policy(c, record), audit))

    async def list_firewall_policies(
        self, workspace_id: str | None = None
    ) -> list[FirewallPolicyRecord]:
        return await self._read(lambda c: fw.select_policies(c, workspace_id))

    async def update_firewall_policy(
        self, policy_id: str, *, name: str | None = None, mode: str | None = None,
        document: dict[str, Any] | None = None, audit: AuditDraft | None = None,
    ) -> FirewallPolicyRecord | None:
        return await self._write(adm.audited(
            lambda c: fw.update_policy(c, policy_id, name, mode, document), audit))



class ConsoleMethods(_Jobs):
    async def query_events(
        self, workspace_id: str, plane: str, *, filters: dict[str, str] | None = None,
        since: str | None = None, until: str | None = None, before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        return await self._read(lambda c: ev.query_events(
            c, workspace_id, plane, filters or {}, since, until, before_seq, limit))

    async def create_session(self, record: SessionRecord) -> SessionRecord:
        return await self._write(lambda c: adm.insert_session(c, record))

    async def get_session(self, token_hash: str) -> SessionRecord | None:
        return await self._read(lambda c: adm.select_session(c, token_hash))

    async def touch_session(self, session_id: str, at: str) -> None:
        await self._write(lambda c: adm.touch_session(c, session_id, at))

    async def revoke_session(self, session_id: str, at: str) -> None:
        await self._write(lambda c: adm.revoke_session(c, session_id, at))

    async def add_login_failure(self, email: str, address: str, at: str) -> None:
        await self._write(lambda c: adm.add_login_failure(c, email, address, at))

    async def count_login_failures(self, email: str, address: str, since: str) -> tuple[int, int]:
        return await self._read(lambda c: adm.count_login_failures(c, email, address, since))

    async def append_audit(self, draft: AuditDraft) -> dict[str, Any]:
        # No mutation result to record: `draft.after`, if set, is called with None.
        return await self._write(lambda c: adm.append_audit(
            c, draft, None if draft.after is None else draft.after(None)))

    async def list_audit(
        self, workspace_id: str, *, before_seq: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return await self._read(lambda c: adm.select_audit(c, workspace_id, before_seq, limit))

    async def audit_chain(self, workspace_id: str | None = None) -> list[dict[str, Any]]:
        return await self._read(lambda c: adm.select_audit_chain(c, workspace_id))


class PackMethods(_Jobs):
    async def install_pack(
        self, installation: PackInstallation, guardrail: GuardrailRecord,
        policy: FirewallPolicyRecord, *, audit: AuditDraft,
    ) -> PackInstallation:
        return await self._write(adm.audited(
            lambda c: pk.install(c, installation, guardrail, policy), audit))

    async def golive_pack(
        self, workspace_id: str, framework: str, *, promote_default: bool, at: str,
        audit: AuditDraft,
    ) -> PackInstallation | None:
        return await self._write(adm.audited(
            lambda c: pk.golive(c, workspace_id, framework, promote_default, at), audit))

    async def list_installations(self, workspace_id: str) -> list[PackInstallation]:
        return await self._read(lambda c: pk.select_installations(c, workspace_id))

    async def count_control_events(
        self, workspace_id: str, plane: str, owner: tuple[str, str], since: str
    ) -> list[tuple[str | None, bool, str, int]]:
        return await self._read(
            lambda c: pk.count_control_events(c, workspace_id, plane, owner, since))


class ReportMethods(_Jobs):
    async def publish_public_keys(self, pems: dict[str, str]) -> None:
        await self._write(lambda c: rp.publish_keys(c, pems))

    async def published_public_keys(self) -> dict[str, str]:
        return await self._read(rp.published_keys)

    async def get_residency(self, workspace_id: str) -> str | None:
        return await self._read(lambda c: rp.get_residency(c, workspace_id))

    async def set_residency(
        self, workspace_id: str, region: str | None, *, audit: AuditDraft
    ) -> str | None:
        await self._write(adm.audited(lambda c: rp.set_residency(c, workspace_id, region),
                                      audit))
        return region

    async def evidence_log_head(self, workspace_id: str) -> dict[str, Any]:
        return await self._read(lambda c: rp.log_head(c, workspace_id))

    async def create_report(
        self, record: ReportRecord, files: dict[str, bytes], *, audit: AuditDraft
    ) -> ReportRecord:
        return await self._write(adm.audited(lambda c: rp.insert_report(c, record, files),
                                             audit))

    async def list_reports(self, workspace_id: str) -> list[ReportRecord]:
        return await self._read(lambda c: rp.select_reports(c, workspace_id))

    async def get_report(self, report_id: str) -> ReportRecord | None:
        return await self._read(lambda c: rp.select_report(c, report_id))

    async def report_file(self, report: ReportRecord, name: str) -> bytes | None:
        return await self._read(lambda c: rp.select_file(c, report, name))

    async def create_share(self, record: ShareRecord, *, audit: AuditDraft) -> ShareRecord:
        return await self._write(adm.audited(lambda c: rp.insert_share(c, record), audit))

    async def get_share(self, share_id: str) -> ShareRecord | None:
        return await self._read(lambda c: rp.select_share(c, "id", share_id))

    async def share_by_token(self, token_hash: str) -> ShareRecord | None:
        return await self._read(lambda c: rp.select_share(c, "token_hash", token_hash))

    async def revoke_share(
        self, share_id: str, at: str, *, audit: AuditDraft
    ) -> ShareRecord | None:
        return await self._write(adm.audited(lambda c: rp.revoke_share(c, share_id, at),
                                             audit))
