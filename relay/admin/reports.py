"""`/api/compliance/reports`, `/share` and `/residency`: signed reports an auditor can
check without trusting us (relay/compliance/*), revocable share links, residency.

A report is generated synchronously: readiness → evidence document → RFC 8785 bytes →
artifact (pdf | json | csv) → statement (both hashes, region, key id) → Ed25519
signature; all four files are stored in the partition of the region declared when it
was generated. Downloads and share reads are served only while the workspace's current
region equals that stamp (an unstamped report is always served).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from relay.admin.auth import token_hash
from relay.admin.authz import Call, store_of
from relay.admin.compliance import framework_readiness
from relay.admin.http import choice, field, json_response, page, read_object
from relay.compliance.evidence import EvidenceInputs, build_evidence, canonical, sha256_hex
from relay.compliance.packs import catalog
from relay.compliance.render import render
from relay.compliance.signing import KeyRing
from relay.compliance.statement import bundle, make_statement
from relay.errors import InvalidRequest, PermissionDenied, StateConflict
from relay.store.base import (
    REGIONS,
    AuditDraft,
    PackInstallation,
    ReportRecord,
    ShareRecord,
    Store,
    new_id,
    rfc3339_now,
)

KEYRING: web.AppKey[KeyRing] = web.AppKey("admin_keyring")
UPSTREAM_URL: web.AppKey[str] = web.AppKey("admin_upstream_url")
FORMATS = ("pdf", "json", "csv")
MEDIA = {"pdf": "application/pdf", "json": "application/json", "csv": "text/csv"}
SAMPLES_PER_CONTROL = 3
SHARE_PREFIX = "orca_share_"


def report_view(r: ReportRecord) -> dict[str, Any]:
    return {"id": r.id, "framework": r.framework, "format": r.format, "region": r.region,
            "created_at": r.created_at, "evidence_sha256": r.evidence_sha256,
            "content_sha256": r.content_sha256, "kid": r.kid}


async def load_report(store: Store, workspace_id: str, match: dict[str, str]
                      ) -> ReportRecord | None:
    report = await store.get_report(match["id"])
    return report if report is not None and report.workspace_id == workspace_id else None


async def load_share(store: Store, workspace_id: str, match: dict[str, str]
                     ) -> ShareRecord | None:
    share = await store.get_share(match["id"])
    return share if share is not None and share.workspace_id == workspace_id else None


PUBLISHED: web.AppKey[list[bool]] = web.AppKey("admin_keys_published")  # [done?]


async def synced_ring(request: web.Request) -> KeyRing:
    """The key ring with every public key the store knows (other replicas' rotations
    included); this process's own keys are published there first, once."""
    ring, store = request.app[KEYRING], store_of(request)
    published = request.app[PUBLISHED]
    if not published[0]:
        await store.publish_public_keys(ring.public_pems())
        published[0] = True
    ring.adopt(await store.published_public_keys())
    return ring


async def check_region(store: Store, report: ReportRecord) -> None:
    """403 residency_mismatch unless the report's stamp is the current region."""
    if report.region is None:
        return
    current = await store.get_residency(report.workspace_id)
    if current != report.region:
        raise PermissionDenied(
            f"this report is stamped for region {report.region!r} and the workspace now "
            f"declares {current!r}; it is withheld here — generate a new report",
            code="residency_mismatch")


# ---- generate / list / download --------------------------------------------------------


async def generate(request: web.Request, call: Call) -> web.StreamResponse:
    body = await read_object(request, ("framework", "format"))
    framework = field(body, "framework", str, required=True)
    fmt = str(choice(body, "format", FORMATS, default="pdf"))
    store = store_of(request)
    installed = {i.framework: i for i in await store.list_installations(call.workspace_id)}
    installation = installed.get(framework)
    if framework not in catalog():
        raise InvalidRequest(f"no framework {framework!r} in the catalog", param="framework",
                             code="unknown_framework")
    if installation is None:
        raise StateConflict(f"{framework} is not installed; a report covers an installed "
                            "pack", code="pack_not_installed")
    ring = await synced_ring(request)
    record, files = await _build(request, call, installation, fmt, ring)
    made = await store.create_report(record, files, audit=AuditDraft(
        call.workspace_id, call.actor, "report.generate", record.id, after=report_view))
    return json_response(report_view(made), status=201)


async def _build(request: web.Request, call: Call, installation: PackInstallation, fmt: str,
                 ring: KeyRing) -> tuple[ReportRecord, dict[str, bytes]]:
    store = store_of(request)
    pack = catalog()[installation.framework]
    report_id, now = new_id("rep"), rfc3339_now()
    region = await store.get_residency(call.workspace_id)
    readiness = await framework_readiness(store, pack, installation)
    samples, populations = await _samples_and_populations(store, installation, readiness)
    assert call.workspace is not None
    inputs = EvidenceInputs(
        report_id=report_id, workspace_id=call.workspace_id,
        workspace_name=call.workspace.name, framework_id=pack.id, framework_name=pack.name,
        framework_version=pack.version, region=region, generated_at=now,
        window_since=installation.installed_at, window_until=now, readiness=readiness,
        samples=samples, populations=populations,
        log=await store.evidence_log_head(call.workspace_id),
        subprocessors=_subprocessors(request.app[UPSTREAM_URL]), kid=ring.current_kid)
    # (a rotation between here and signing is caught below: the statement names the kid)
    document = build_evidence(inputs)
    evidence = canonical(document)
    artifact = render(fmt, document, evidence)  # type: ignore[arg-type]
    stated_kid = ring.current_kid
    statement = make_statement(report_id, call.workspace_id, pack.id, fmt, region, now,
                               sha256_hex(evidence), sha256_hex(artifact), stated_kid)
    kid, signature = ring.sign(statement)
    if kid != stated_kid:
        raise StateConflict("the signing key rotated while the report was made; retry",
                            code="signing_key_rotated")
    record = ReportRecord(report_id, call.workspace_id, pack.id, fmt, region, now,
                          sha256_hex(evidence), sha256_hex(artifact), kid)
    files = {f"report.{fmt}": artifact, "evidence.json": evidence,
             "statement.json": statement, "statement.sig": signature}
    return record, files


async def _samples_and_populations(
    store: Store, installation: PackInstallation, readiness: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    owners = {"guardrail": ("guardrail_id", installation.guardrail_id),
              "firewall": ("policy_id", installation.firewall_policy_id)}
    samples: list[dict[str, Any]] = []
    populations: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for clause in readiness["clauses"]:
        for control in clause["controls"]:
            kind, rule_id = control["kind"], control["id"]
            if (kind, rule_id) in seen:
                continue
            seen.add((kind, rule_id))
            owner_field, owner_id = owners[kind]
            filters = {owner_field: owner_id, "rule_id": rule_id}
            found = await store.query_events(installation.workspace_id, kind, filters=filters,
                                             since=installation.installed_at,
                                             limit=SAMPLES_PER_CONTROL)
            samples += found
            rows = await store.count_control_events(installation.workspace_id, kind,
                                                    (owner_field, owner_id),
                                                    installation.installed_at)
            populations.append({
                "figure": f"{kind}:{rule_id} would_have_blocked and applied",
                "query": f"evidence_events where plane = '{kind}' and {owner_field} = "
                         f"'{owner_id}' and rule_id = '{rule_id}' and at >= "
                         f"'{installation.installed_at}'",
                "count": sum(n for r, _, _, n in rows if r == rule_id)})
    return samples, populations


def _subprocessors(upstream_url: str) -> list[dict[str, Any]]:
    host = urlsplit(upstream_url).hostname or upstream_url
    return [{"name": host, "role": "LLM provider (the relay's upstream)",
             "regions": "processes request data in its own regions, under its own terms"}]


async def list_reports(request: web.Request, call: Call) -> web.StreamResponse:
    found = await store_of(request).list_reports(call.workspace_id)
    return page(request, found, report_view, lambda r: r.created_at + r.id)


async def download(request: web.Request, call: Call) -> web.StreamResponse:
    report: ReportRecord = call.object
    store = store_of(request)
    await check_region(store, report)
    files = await report_files(store, report)
    if request.query.get("bundle") in ("1", "true"):
        return web.Response(body=zipped(request, report, files),
                            content_type="application/zip",
                            headers=_attachment(f"{report.id}.zip"))
    name = f"report.{report.format}"
    return web.Response(body=files[name], content_type=MEDIA[report.format],
                        headers={**_attachment(f"{report.id}.{report.format}"),
                                 "X-Content-SHA256": report.content_sha256,
                                 "X-Evidence-SHA256": report.evidence_sha256})


async def report_files(store: Store, report: ReportRecord) -> dict[str, bytes]:
    files = {}
    for name in (f"report.{report.format}", "evidence.json", "statement.json",
                 "statement.sig"):
        data = await store.report_file(report, name)
        if data is None:
            raise StateConflict(f"report {report.id} is missing {name}",
                                code="report_incomplete")
        files[name] = data
    return files


def zipped(request: web.Request, report: ReportRecord, files: dict[str, bytes]) -> bytes:
    return bundle(report.format, files[f"report.{report.format}"], files["evidence.json"],
                  files["statement.json"], files["statement.sig"],
                  pubkey_base=f"{request.scheme}://{request.host}")


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


# ---- share links -------------------------------------------------------------------------


async def share(request: web.Request, call: Call) -> web.StreamResponse:
    report: ReportRecord = call.object
    token = SHARE_PREFIX + secrets.token_urlsafe(24)  # 192 random bits
    record = ShareRecord(new_id("shr"), call.workspace_id, report.id, token_hash(token),
                         rfc3339_now())
    await store_of(request).create_share(record, audit=AuditDraft(
        call.workspace_id, call.actor, "share.create", record.id,
        after=lambda s: {"id": s.id, "report_id": s.report_id, "created_at": s.created_at}))
    url = f"{request.scheme}://{request.host}/api/public/compliance/share/{token}"
    return json_response({"id": record.id, "token": token, "url": url,
                          "report_id": report.id, "created_at": record.created_at},
                         status=201)


async def revoke_share(request: web.Request, call: Call) -> web.StreamResponse:
    current: ShareRecord = call.object
    revoked = await store_of(request).revoke_share(current.id, rfc3339_now(), audit=AuditDraft(
        call.workspace_id, call.actor, "share.revoke", current.id,
        before={"id": current.id, "revoked_at": current.revoked_at},
        after=lambda s: {"id": s.id, "revoked_at": s.revoked_at}))
    if revoked is None:
        raise StateConflict(f"share {current.id} is revoked already", code="share_revoked")
    return web.Response(status=204)


# ---- residency ---------------------------------------------------------------------------


async def get_residency(request: web.Request, call: Call) -> web.StreamResponse:
    return json_response({"region": await store_of(request).get_residency(call.workspace_id)})


async def put_residency(request: web.Request, call: Call) -> web.StreamResponse:
    body = await read_object(request, ("region",))
    if "region" not in body:
        raise InvalidRequest("region is required (null to unset)", param="region",
                             code="missing_required_parameter")
    region = choice(body, "region", REGIONS)
    store = store_of(request)
    before = await store.get_residency(call.workspace_id)
    await store.set_residency(call.workspace_id, region, audit=AuditDraft(
        call.workspace_id, call.actor, "residency.update", call.workspace_id,
        before={"region": before}, after=lambda _: {"region": region}))
    return json_response({"region": region})
