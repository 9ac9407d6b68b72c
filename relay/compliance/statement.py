"""The signed statement, the download bundle, and their verification.

Signed-bytes convention: `statement.sig` is the raw 64-byte Ed25519 (PureEdDSA) signature
over exactly the bytes of `statement.json` as shipped, an RFC 8785 object with no trailing
newline. The statement carries `evidence_sha256` (over `evidence.json`) and
`content_sha256` (over `report.<fmt>`), so one signature covers both files and OpenSSL 3
plus `sha256sum` are all an auditor needs.

`verify_parts` / `verify_bundle` are the security boundary for reports handed to us by
anyone: they never raise on bad input and always name the first thing that failed.
"""

from __future__ import annotations

import io
import json
import lzma
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from relay.compliance.evidence import sha256_hex

FORMATS = ("json", "csv", "pdf")
STATEMENT_SCHEMA = "orca-relay/statement/v1"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # uncompressed total; a zip bomb stops here
MAX_MEMBERS = 16
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
PublicKeyFor = Callable[[str], Ed25519PublicKey | None]


def make_statement(report_id: str, workspace_id: str, framework: str, fmt: str,
                   region: str | None, generated_at: str, evidence_sha256: str,
                   content_sha256: str, kid: str) -> bytes:
    """The RFC 8785 bytes to sign and to ship as `statement.json`."""
    return rfc8785.dumps({
        "schema": STATEMENT_SCHEMA, "report_id": report_id, "workspace_id": workspace_id,
        "framework": framework, "format": fmt, "region": region,
        "generated_at": generated_at, "evidence_sha256": evidence_sha256,
        "content_sha256": content_sha256, "kid": kid, "signature_alg": "Ed25519",
        "signed_bytes": "this statement, as shipped",
    })


def verify_text(fmt: str, statement: dict[str, Any], pubkey_base: str) -> str:
    """VERIFY.txt: the OpenSSL 3 + coreutils recipe for this bundle."""
    kid = statement["kid"]
    return f"""Verifying report {statement["report_id"]} ({statement["framework"]}, {fmt})
================================================================

Needs OpenSSL 3.0 or later (macOS's LibreSSL `openssl` cannot verify Ed25519) and
coreutils. Do not open and re-save statement.json: the signature is over its exact bytes
(RFC 8785 JSON, no trailing newline).

1. Fetch the signing key ({kid}) from the relay, or take it from your own trusted copy:

   curl -fsS '{pubkey_base}/api/public/compliance/pubkey?kid={kid}' > pub.pem

2. Check the signature over statement.json (raw 64-byte Ed25519 signature):

   openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in statement.json -sigfile statement.sig

   Expected: "Signature Verified Successfully" (exit 0).

3. Hash the evidence and the report and compare with the signed statement:

   sha256sum evidence.json report.{fmt}
   grep -o '"[a-z]*_sha256":"[0-9a-f]*"' statement.json

   evidence.json must equal evidence_sha256 and report.{fmt} must equal content_sha256.

Claimed by statement.json (only the signed file counts, not this text):
   evidence_sha256 {statement["evidence_sha256"]}
   content_sha256  {statement["content_sha256"]}

Or, with orca-relay installed:  orca-relay verify bundle.zip --pubkey pub.pem
"""


def bundle(fmt: str, artifact: bytes, evidence_bytes: bytes, statement: bytes,
           signature: bytes, *, pubkey_base: str = "https://<relay-admin-host>") -> bytes:
    """The download zip: report.<fmt>, evidence.json, statement.json/.sig, VERIFY.txt."""
    parsed = _parse_statement(statement)
    members = [(f"report.{fmt}", artifact), ("evidence.json", evidence_bytes),
               ("statement.json", statement), ("statement.sig", signature),
               ("VERIFY.txt", verify_text(fmt, parsed, pubkey_base).encode())]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members:
            # Fixed timestamps: the same report always zips to the same bytes.
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return out.getvalue()


@dataclass(frozen=True)
class VerifyResult:
    """The verify answer; the ids and hashes are the statement's claims when parsable."""

    valid: bool
    reason: str
    report_id: str | None = None
    kid: str | None = None
    evidence_sha256: str | None = None
    content_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class VerificationError(Exception):
    """One check failed; the message is the reason reported."""


def verify_parts(statement: bytes, signature: bytes, artifact: bytes, evidence: bytes,
                 public_key_for: PublicKeyFor) -> VerifyResult:
    """Check signature, canonical form and both hashes; never raises on bad input."""
    claims: dict[str, Any] = {}
    try:
        claims = _parse_statement(statement)
        _check(claims, statement, signature, artifact, evidence, public_key_for)
    except VerificationError as exc:
        return _result(False, str(exc), claims)
    return _result(True, "signature and both hashes verify", claims)


def _result(valid: bool, reason: str, claims: dict[str, Any]) -> VerifyResult:
    def text(key: str) -> str | None:
        value = claims.get(key)
        return value if isinstance(value, str) else None

    return VerifyResult(valid, reason, text("report_id"), text("kid"),
                        text("evidence_sha256"), text("content_sha256"))


def _parse_statement(statement: bytes) -> dict[str, Any]:
    try:
        claims = strict_json_loads(statement)
    except ValueError as exc:
        raise VerificationError(f"statement.json is not JSON ({exc})") from None
    if not isinstance(claims, dict):
        raise VerificationError("statement.json is not a JSON object")
    try:
        recanonical = rfc8785.dumps(claims)
    except (rfc8785.CanonicalizationError, TypeError):
        recanonical = b""
    if recanonical != statement:
        raise VerificationError("statement.json is not canonical RFC 8785 JSON (re-saved or "
                                "edited?); the signature covers its exact bytes")
    for key in ("report_id", "workspace_id", "framework", "format", "generated_at", "kid",
                "evidence_sha256", "content_sha256"):
        if not isinstance(claims.get(key), str):
            raise VerificationError(f"statement.json: '{key}' is missing or not a string")
    if not isinstance(claims.get("region"), str | None):
        raise VerificationError("statement.json: 'region' is not a string or null")
    if claims.get("signature_alg") != "Ed25519":
        raise VerificationError("statement.json: 'signature_alg' is not Ed25519")
    if claims["format"] not in FORMATS:
        raise VerificationError(f"statement.json: unknown format {claims['format']!r}")
    for key in ("evidence_sha256", "content_sha256"):
        if not _HEX64.match(claims[key]):
            raise VerificationError(f"statement.json: '{key}' is not 64 lowercase hex digits")
    return claims


def strict_json_loads(data: bytes) -> Any:
    """Strict JSON parse: UTF-8 only, no NaN/Infinity, duplicate keys refused."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from None
    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _check(claims: dict[str, Any], statement: bytes, signature: bytes, artifact: bytes,
           evidence: bytes, public_key_for: PublicKeyFor) -> None:
    kid = claims["kid"]
    key = public_key_for(kid)
    if key is None:
        raise VerificationError(f"no public key for kid {kid!r}")
    if len(signature) != 64:
        raise VerificationError(f"statement.sig is {len(signature)} bytes; a raw Ed25519 "
                                "signature is 64")
    try:
        key.verify(signature, statement)
    except InvalidSignature:
        raise VerificationError(f"signature does not verify with key {kid}") from None
    actual = sha256_hex(evidence)
    if actual != claims["evidence_sha256"]:
        raise VerificationError(f"evidence.json SHA-256 is {actual}, the statement says "
                                f"{claims['evidence_sha256']}")
    actual = sha256_hex(artifact)
    if actual != claims["content_sha256"]:
        raise VerificationError(f"report.{claims['format']} SHA-256 is {actual}, the "
                                f"statement says {claims['content_sha256']}")
    _check_evidence_names(claims, evidence)


def _check_evidence_names(claims: dict[str, Any], evidence: bytes) -> None:
    """The signed evidence must describe the report the statement names."""
    try:
        doc = strict_json_loads(evidence)
        names = (doc["report"]["id"], doc["workspace"]["id"], doc["framework"]["id"],
                 doc["kid"])
    except (ValueError, KeyError, TypeError):
        raise VerificationError("evidence.json is not an orca-relay evidence document") from None
    if names != (claims["report_id"], claims["workspace_id"], claims["framework"],
                 claims["kid"]):
        raise VerificationError("evidence.json describes another report, workspace, "
                                "framework or key than statement.json")


def verify_bundle(zip_bytes: bytes, public_key_for: PublicKeyFor) -> VerifyResult:
    """Verify a download bundle; a bad or oversized zip is invalid, never a crash."""
    try:
        members = _read_zip(zip_bytes)
        statement = members.get("statement.json")
        if statement is None:
            raise VerificationError("bundle has no statement.json")
        fmt = _parse_statement(statement)["format"]
        for name in ("statement.sig", "evidence.json", f"report.{fmt}"):
            if name not in members:
                raise VerificationError(f"bundle has no {name}")
    except VerificationError as exc:
        return VerifyResult(False, str(exc))
    return verify_parts(statement, members["statement.sig"], members[f"report.{fmt}"],
                        members["evidence.json"], public_key_for)


def _read_zip(zip_bytes: bytes) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
            infos = zf.infolist()
            names = [i.filename for i in infos]
            if len(infos) > MAX_MEMBERS:
                raise VerificationError(f"bundle has {len(infos)} members; at most "
                                        f"{MAX_MEMBERS} expected")
            if len(set(names)) != len(names):
                raise VerificationError("bundle has duplicate member names")
            budget, out = MAX_BUNDLE_BYTES, {}
            for info in infos:
                if info.file_size > budget:
                    raise VerificationError("bundle is larger than 64 MiB uncompressed")
                with zf.open(info) as fh:
                    # file_size can lie; read one byte past the budget to catch that.
                    data = fh.read(budget + 1)
                budget -= len(data)
                if budget < 0:
                    raise VerificationError("bundle is larger than 64 MiB uncompressed")
                out[info.filename] = data
            return out
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError,
            OSError, RuntimeError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise VerificationError(f"not a readable zip bundle ({exc})") from None
