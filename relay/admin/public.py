"""`/api/public/compliance/*`: what an auditor uses with no account.

- `share/{token}`: one report through a share link — an HTML page for a browser, JSON
  for an API client, `?download=1` for the bundle. Nothing else of the workspace shows.
  Revoked or unknown → 404; a report stamped for another region → 403.
- `pubkey`: the current public key as PEM (`?kid=` for an older one), `?format=jwks` for
  every key ever used. The private key is never served.
- `verify`: a bundle zip, or the four parts as base64 JSON → valid or not, with why.
  Convenience only: the offline ways (`orca-relay verify`, OpenSSL) need no trust in us.

Every public route is rate-limited per client address (in each process).
"""

from __future__ import annotations

import base64
import binascii
import html
import time
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from relay.admin.auth import token_hash
from relay.admin.authz import Call, store_of
from relay.admin.http import MAX_ADMIN_BODY, field, json_response
from relay.admin.reports import check_region, report_files, report_view, synced_ring, zipped
from relay.compliance.statement import VerifyResult, verify_bundle, verify_parts
from relay.errors import InvalidRequest, NotFound, TooManyAttempts
from relay.proxy.validation import parse_json_object, read_body

PUBLIC_LIMIT = 120  # requests per address per minute, per process
_WINDOW = 60.0
_recent: dict[str, deque[float]] = {}


def throttle(request: web.Request) -> None:
    now = time.monotonic()
    address = request.remote or "unknown"
    seen = _recent.setdefault(address, deque())
    while seen and seen[0] <= now - _WINDOW:
        seen.popleft()
    if len(seen) >= PUBLIC_LIMIT:
        raise TooManyAttempts("too many requests from this address; slow down",
                              code="too_many_requests")
    seen.append(now)
    if len(_recent) > 10_000:  # forget idle addresses rather than grow without bound
        for key in [k for k, v in _recent.items() if not v or v[-1] <= now - _WINDOW]:
            del _recent[key]


async def shared_report(request: web.Request, call: Call) -> web.StreamResponse:
    throttle(request)
    store = store_of(request)
    found = await store.share_by_token(token_hash(request.match_info["token"]))
    report = await store.get_report(found.report_id) if found is not None else None
    if found is None or found.revoked_at is not None or report is None:
        raise NotFound("no such share link (it may have been revoked)", code="share_not_found")
    await check_region(store, report)
    files = await report_files(store, report)
    if request.query.get("download") in ("1", "true"):
        return web.Response(body=zipped(request, report, files),
                            content_type="application/zip",
                            headers={"Content-Disposition":
                                     f'attachment; filename="{report.id}.zip"'})
    statement = orjson.loads(files["statement.json"])
    signature = base64.b64encode(files["statement.sig"]).decode()
    if "text/html" in request.headers.get("Accept", ""):
        return web.Response(text=_page(report_view(report), statement, signature),
                            content_type="text/html")
    return json_response({"report": report_view(report), "statement": statement,
                          "signature": signature,
                          "evidence": orjson.loads(files["evidence.json"])})


def _page(report: dict[str, Any], statement: dict[str, Any], signature: str) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(str(v))}"
                   "</code></td></tr>" for k, v in statement.items())
    kid = html.escape(str(statement.get("kid", "")))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed {html.escape(report["framework"])}
report {html.escape(report["id"])}</title></head><body>
<h1>Signed {html.escape(report["framework"])} readiness report</h1>
<p>Report <code>{html.escape(report["id"])}</code>, {html.escape(report["format"])},
generated {html.escape(report["created_at"])}, region
{html.escape(str(report["region"] or "unstamped"))}.</p>
<h2>Signed statement</h2><table>{rows}</table>
<p>Signature (Ed25519, base64): <code>{html.escape(signature)}</code></p>
<h2>Verify it yourself</h2>
<ol><li><a href="?download=1">Download the bundle</a> (artifact, evidence.json,
statement.json, statement.sig, VERIFY.txt).</li>
<li>Get the public key: <code>/api/public/compliance/pubkey?kid={kid}</code>.</li>
<li><code>openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in statement.json
-sigfile statement.sig</code>, then <code>sha256sum evidence.json report.*</code> against
the statement's hashes.</li></ol></body></html>"""


async def pubkey(request: web.Request, call: Call) -> web.StreamResponse:
    throttle(request)
    ring = await synced_ring(request)
    if request.query.get("format") == "jwks":
        return json_response(ring.jwks())
    kid = request.query.get("kid")
    try:
        pem = ring.pem(kid)
    except KeyError:
        raise NotFound(f"no public key {kid!r}", code="unknown_kid") from None
    return web.Response(body=pem, content_type="application/x-pem-file")


async def verify(request: web.Request, call: Call) -> web.StreamResponse:
    throttle(request)
    ring = await synced_ring(request)
    raw = await read_body(request, MAX_ADMIN_BODY * 64)
    result: VerifyResult
    if request.content_type == "application/zip":
        result = verify_bundle(raw, ring.public_key)
    else:
        body = parse_json_object(raw, request.content_type, request.charset)
        statement, signature, artifact, evidence = (
            _b64(field(body, name, str, required=True), name)
            for name in ("statement", "signature", "artifact", "evidence"))
        result = verify_parts(statement, signature, artifact, evidence, ring.public_key)
    return json_response({"valid": result.valid, "reason": result.reason,
                          "report_id": result.report_id, "kid": result.kid,
                          "evidence_sha256": result.evidence_sha256,
                          "content_sha256": result.content_sha256})


def _b64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{name} is not base64", param=name, code="invalid_value") from None
