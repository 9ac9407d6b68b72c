"""Signed statement and bundle: round trips, single-byte tampering, OpenSSL, bad zips."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import rfc8785

from relay.compliance.evidence import build_evidence, canonical, sha256_hex
from relay.compliance.render import Format, render
from relay.compliance.signing import KeyRing
from relay.compliance.statement import (
    MAX_BUNDLE_BYTES,
    bundle,
    make_statement,
    verify_bundle,
    verify_parts,
)
from tests.compliance.test_evidence import sample_inputs

FORMATS: tuple[Format, ...] = ("json", "csv", "pdf")


@dataclass
class Report:
    fmt: Format
    artifact: bytes
    evidence: bytes
    statement: bytes
    signature: bytes
    zip: bytes

    def parts(self) -> tuple[bytes, bytes, bytes, bytes]:
        return self.statement, self.signature, self.artifact, self.evidence


def make_report(ring: KeyRing, fmt: Format, report_id: str = "rep_01") -> Report:
    """The whole pipeline the admin route runs: build, render, state, sign, bundle."""
    inputs = sample_inputs(report_id=report_id, kid=ring.current_kid)
    document = build_evidence(inputs)
    evidence = canonical(document)
    artifact = render(fmt, document, evidence)
    statement = make_statement(report_id, inputs.workspace_id, inputs.framework_id, fmt,
                               inputs.region, inputs.generated_at, sha256_hex(evidence),
                               sha256_hex(artifact), ring.current_kid)
    kid, signature = ring.sign(statement)
    assert kid == ring.current_kid
    return Report(fmt, artifact, evidence, statement, signature,
                  bundle(fmt, artifact, evidence, statement, signature,
                         pubkey_base="https://relay.example"))


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing(str(tmp_path / "signing" / "ed25519.pem"))


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def _positions(n: int, count: int = 150) -> list[int]:
    return sorted({0, n - 1, *range(0, n, max(1, n // count))})


def test_statement_is_canonical_with_the_pinned_fields(ring: KeyRing) -> None:
    report = make_report(ring, "pdf")
    claims = json.loads(report.statement)
    assert rfc8785.dumps(claims) == report.statement
    assert not report.statement.endswith(b"\n")
    assert claims["signature_alg"] == "Ed25519"
    assert claims["signed_bytes"] == "this statement, as shipped"
    assert {k: claims[k] for k in ("report_id", "workspace_id", "framework", "format",
                                   "region", "generated_at", "kid")} == {
        "report_id": "rep_01", "workspace_id": "ws_01", "framework": "soc2", "format": "pdf",
        "region": "eu", "generated_at": "2025-03-04T05:06:07Z", "kid": ring.current_kid}
    assert claims["evidence_sha256"] == hashlib.sha256(report.evidence).hexdigest()
    assert claims["content_sha256"] == hashlib.sha256(report.artifact).hexdigest()


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_and_any_flipped_byte_is_caught(ring: KeyRing, fmt: Format) -> None:
    report = make_report(ring, fmt)
    result = verify_bundle(report.zip, ring.public_key)
    assert result.valid, result.reason
    assert result.report_id == "rep_01" and result.kid == ring.current_kid
    assert result.evidence_sha256 == sha256_hex(report.evidence)
    assert result.content_sha256 == sha256_hex(report.artifact)
    assert verify_parts(*report.parts(), ring.public_key) == result
    parts = report.parts()
    every = {0: range(len(report.statement)), 1: range(64)}
    for index, data in enumerate(parts):
        for i in every.get(index, _positions(len(data))):
            tampered = list(parts)
            tampered[index] = _flip(data, i)
            got = verify_parts(tampered[0], tampered[1], tampered[2], tampered[3],
                               ring.public_key)
            assert not got.valid, (index, i)


def test_reasons_are_precise(ring: KeyRing) -> None:
    r = make_report(ring, "csv")

    def reason(statement: bytes = r.statement, signature: bytes = r.signature,
               artifact: bytes = r.artifact, evidence: bytes = r.evidence) -> str:
        got = verify_parts(statement, signature, artifact, evidence, ring.public_key)
        assert not got.valid
        return got.reason

    claims = json.loads(r.statement)
    assert "not JSON" in reason(statement=b"{nope")
    assert "not JSON" in reason(statement=b"\xff\xfe")
    assert "not a JSON object" in reason(statement=b"[]")
    assert "not canonical" in reason(statement=r.statement + b"\n")
    assert "not canonical" in reason(statement=json.dumps(claims, indent=2).encode())
    dup = r.statement[:-1] + b',"kid":"x"}'
    assert "not JSON" in reason(statement=dup)
    assert "'kid' is missing" in reason(statement=rfc8785.dumps({**claims, "kid": 1}))
    assert "no public key for kid 'ed25519-ffffffffffffffff'" in reason(
        statement=rfc8785.dumps({**claims, "kid": "ed25519-ffffffffffffffff"}))
    for size in (0, 63, 65):
        assert f"statement.sig is {size} bytes" in reason(signature=r.signature[:size]
                                                          + b"\0" * max(0, size - 64))
    assert "signature does not verify" in reason(signature=bytes(64))
    assert "evidence.json SHA-256" in reason(evidence=r.evidence + b" ")
    assert "report.csv SHA-256" in reason(artifact=r.artifact + b"x")
    other = make_report(ring, "json", report_id="rep_02")
    assert "evidence.json SHA-256" in reason(evidence=other.evidence)


def test_reasons_for_unsigned_garbage_never_raise(ring: KeyRing) -> None:
    for statement in (b"", b"null", b"1e999", b'{"a":NaN}', b"[" * 100_000, b'"\xed\xa0\x80"',
                      b'{"n":1152921504606846976}', b'{"n":1.0}'):
        got = verify_parts(statement, b"", b"", b"", ring.public_key)
        assert not got.valid and got.reason


def test_bundle_layout_and_verify_txt(ring: KeyRing) -> None:
    report = make_report(ring, "pdf")
    with zipfile.ZipFile(io.BytesIO(report.zip)) as zf:
        assert sorted(zf.namelist()) == ["VERIFY.txt", "evidence.json", "report.pdf",
                                         "statement.json", "statement.sig"]
        assert zf.read("statement.json") == report.statement
        assert zf.read("evidence.json") == report.evidence
        text = zf.read("VERIFY.txt").decode()
    assert (f"https://relay.example/api/public/compliance/pubkey?kid={ring.current_kid}"
            in text)
    assert ("openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in statement.json "
            "-sigfile statement.sig") in text
    assert "sha256sum evidence.json report.pdf" in text
    assert bundle("pdf", report.artifact, report.evidence, report.statement, report.signature,
                  pubkey_base="https://relay.example") == report.zip  # reproducible bytes


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # a duplicate member name is the point of one case
        for name, data in members:
            zf.writestr(name, data)
    return out.getvalue()


def test_bad_bundles_are_invalid_not_crashes(ring: KeyRing) -> None:
    r = make_report(ring, "json")
    good = [("report.json", r.artifact), ("evidence.json", r.evidence),
            ("statement.json", r.statement), ("statement.sig", r.signature)]
    assert verify_bundle(_zip(good), ring.public_key).valid
    cases = {
        b"": "not a readable zip",
        b"PK\x03\x04garbage": "not a readable zip",
        r.zip[: len(r.zip) // 2]: "not a readable zip",
        _zip(good[1:]): "no report.json",
        _zip(good[:2] + good[3:]): "no statement.json",
        _zip(good[:3]): "no statement.sig",
        _zip([*good, ("statement.json", r.statement)]): "duplicate member",
        _zip([*good, *((f"x{i}", b"") for i in range(20))]): "members",
        _zip([*good, ("bomb", bytes(MAX_BUNDLE_BYTES))]): "larger than 64 MiB",
    }
    for data, expected in cases.items():
        got = verify_bundle(data, ring.public_key)
        assert not got.valid and expected in got.reason, (expected, got.reason)
    swapped = _zip([("report.json", r.evidence + b" "), *good[1:]])
    assert "report.json SHA-256" in verify_bundle(swapped, ring.public_key).reason
    # Corrupt a member's compressed data: CRC or inflate error, reported, not raised.
    broken = bytearray(r.zip)
    at = r.zip.index(b"evidence.json") + 40
    broken[at:at + 8] = b"\xff" * 8
    assert not verify_bundle(bytes(broken), ring.public_key).valid


def _openssl_3() -> str:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("openssl is not installed")
    version = subprocess.run([exe, "version"], capture_output=True, text=True).stdout
    match = re.match(r"OpenSSL (\d+)\.", version)
    if match is None or int(match.group(1)) < 3:
        pytest.skip(f"needs OpenSSL 3.x for Ed25519 -rawin, found {version.strip()!r}")
    return exe


@pytest.mark.parametrize("fmt", FORMATS)
def test_openssl_and_sha256sum_verify_the_bundle(ring: KeyRing, tmp_path: Path,
                                                 fmt: Format) -> None:
    openssl = _openssl_3()
    report = make_report(ring, fmt)
    with zipfile.ZipFile(io.BytesIO(report.zip)) as zf:
        zf.extractall(tmp_path)
    (tmp_path / "pub.pem").write_bytes(ring.pem(ring.current_kid))
    command = [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin",
               "-in", "statement.json", "-sigfile", "statement.sig"]
    ok = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "Signature Verified Successfully" in ok.stdout
    sums = subprocess.run(["sha256sum", "evidence.json", f"report.{fmt}"], cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout.split()
    claims = json.loads((tmp_path / "statement.json").read_bytes())
    assert sums == [claims["evidence_sha256"], "evidence.json",
                    claims["content_sha256"], f"report.{fmt}"]
    assert sums[0] == hashlib.sha256((tmp_path / "evidence.json").read_bytes()).hexdigest()
    statement = tmp_path / "statement.json"
    statement.write_bytes(statement.read_bytes().replace(b'"region":"eu"', b'"region":"us"'))
    bad = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1 and "Signature Verification Failure" in bad.stdout
