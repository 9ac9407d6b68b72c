"""Signed reports end to end (spec page 1, section 8) and residency (spec page 2), on real
loopback HTTP with real keys: generate, download, verify three ways, share, withhold."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.compliance.evidence import canonical, sha256_hex
from relay.compliance.signing import kid_of, public_pem
from relay.compliance.statement import make_statement
from relay.store.base import rfc3339_now
from tests.admin.conftest import Console

AWS_KEY = "AKIAZ7Q3KXW2M4H5PLTB"


async def _live_soc2_with_traffic(console: Console) -> str:
    token = await console.admin_token()
    await console.call("POST", "/api/compliance/packs/soc2/install", token=token)
    await console.relay.services.access.refresh()
    body = {"model": "m", "messages": [{"role": "user", "content": f"key {AWS_KEY}"}]}
    async with aiohttp.ClientSession() as http, http.post(
            console.relay.base_url + "/chat/completions", json=body,
            headers=console.relay.headers()) as response:
        assert response.status == 200  # observe
    await console.call("POST", "/api/compliance/packs/soc2/golive", token=token, json={})
    return token


async def _public(console: Console, path: str, **kwargs: Any) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as http, http.request(
            kwargs.pop("method", "GET"), console.relay.admin_url + path, **kwargs) as response:
        return response.status, await response.read(), response.content_type


def _files(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize("fmt", ["pdf", "json", "csv"])
async def test_a_report_verifies_three_ways_and_one_byte_breaks_each(
    console: Console, fmt: str, tmp_path: Path
) -> None:
    token = await _live_soc2_with_traffic(console)
    made = await console.call("POST", "/api/compliance/reports", token=token,
                              json={"framework": "soc2", "format": fmt})
    assert made.status == 201
    report = made.body
    assert set(report) >= {"id", "framework", "format", "region", "created_at",
                           "evidence_sha256", "content_sha256", "kid"}
    artifact = await console.call("GET", f"/api/compliance/reports/{report['id']}/download",
                                  token=token)
    raw = artifact.body if isinstance(artifact.body, bytes) else orjson.dumps(artifact.body)
    if fmt != "json":
        assert hashlib.sha256(raw).hexdigest() == report["content_sha256"]
    bundle = await console.call("GET", f"/api/compliance/reports/{report['id']}/download"
                                "?bundle=1", token=token)
    files = _files(bundle.body)
    assert set(files) == {f"report.{fmt}", "evidence.json", "statement.json",
                          "statement.sig", "VERIFY.txt"}
    statement = orjson.loads(files["statement.json"])
    assert statement["content_sha256"] == hashlib.sha256(files[f"report.{fmt}"]).hexdigest()
    assert statement["evidence_sha256"] == hashlib.sha256(files["evidence.json"]).hexdigest()
    assert AWS_KEY not in files["evidence.json"].decode()
    evidence = orjson.loads(files["evidence.json"])
    assert evidence["coverage"]["counts"]["enforcing"] >= 2  # live: section 8's coverage
    assert {g["clause_id"] for g in evidence["gaps"]} >= {"CC1.4", "CC9.2"}
    head = await console.relay.services.store.evidence_log_head(console.relay.boot.workspace.id)
    assert evidence["event_log"]["head_hash"] == head["head_hash"] != "0" * 64
    # 1. the public verify route
    status, answer, _ = await _public(console, "/api/public/compliance/verify", method="POST",
                                      data=bundle.body,
                                      headers={"Content-Type": "application/zip"})
    assert status == 200 and orjson.loads(answer)["valid"] is True
    # 2. orca-relay verify, offline, with the key fetched from the public route
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle.body)
    pubkey_url = f"{console.relay.admin_url}/api/public/compliance/pubkey?kid={report['kid']}"
    verified = await _cli("verify", str(path), "--pubkey", pubkey_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # 3. OpenSSL alone, as VERIFY.txt says
    if shutil.which("openssl"):
        _, pem, _ = await _public(console, f"/api/public/compliance/pubkey?kid={report['kid']}")
        for name, data in {**files, "pub.pem": pem}.items():
            (tmp_path / name).write_bytes(data)
        ok = await asyncio.to_thread(
            subprocess.run, ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem",
                             "-rawin", "-in", "statement.json", "-sigfile", "statement.sig"],
            cwd=tmp_path, capture_output=True, text=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr
    # any single changed byte (artifact, evidence, statement, signature) is invalid
    for name in (f"report.{fmt}", "evidence.json", "statement.json", "statement.sig"):
        tampered = dict(files)
        flipped = bytearray(tampered[name])
        flipped[len(flipped) // 2] ^= 0x01
        tampered[name] = bytes(flipped)
        parts = {"statement": tampered["statement.json"],
                 "signature": tampered["statement.sig"],
                 "artifact": tampered[f"report.{fmt}"], "evidence": tampered["evidence.json"]}
        status, answer, _ = await _public(
            console, "/api/public/compliance/verify", method="POST",
            json={k: base64.b64encode(v).decode() for k, v in parts.items()})
        assert status == 200 and orjson.loads(answer)["valid"] is False, name


async def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "relay", *args],
                                   capture_output=True, text=True, timeout=60)


async def test_share_links_need_no_session_show_one_report_and_revoke(
    console: Console
) -> None:
    token = await _live_soc2_with_traffic(console)
    report = (await console.call("POST", "/api/compliance/reports", token=token,
                                 json={"framework": "soc2", "format": "json"})).body
    shared = await console.call("POST", f"/api/compliance/reports/{report['id']}/share",
                                token=token)
    assert shared.status == 201 and shared.body["url"].startswith(console.relay.admin_url)
    secret = shared.body["token"]
    assert len(secret) >= 32 and secret not in str(await console.call("GET", "/api/audit",
                                                                       token=token))
    path = f"/api/public/compliance/share/{secret}"
    status, body, kind = await _public(console, path)
    view = orjson.loads(body)
    assert status == 200 and kind == "application/json"
    assert set(view) == {"report", "statement", "signature", "evidence"}
    assert view["report"]["id"] == report["id"]
    assert view["statement"]["evidence_sha256"] == report["evidence_sha256"]
    status, page, kind = await _public(console, path, headers={"Accept": "text/html"})
    assert status == 200 and kind == "text/html"
    assert report["content_sha256"].encode() in page and b"openssl pkeyutl" in page
    status, bundle, _ = await _public(console, path + "?download=1")
    assert status == 200 and "statement.sig" in _files(bundle)
    revoked = await console.call("DELETE", f"/api/compliance/share/{shared.body['id']}",
                                 token=token)
    assert revoked.status == 204
    assert (await _public(console, path))[0] == 404
    assert (await _public(console, "/api/public/compliance/share/orca_share_nope"))[0] == 404


async def test_residency_stamps_and_withholds(console: Console) -> None:
    token = await _live_soc2_with_traffic(console)
    unstamped = (await console.call("POST", "/api/compliance/reports", token=token,
                                    json={"framework": "soc2", "format": "csv"})).body
    assert unstamped["region"] is None
    declared = await console.call("PUT", "/api/compliance/residency", token=token,
                                  json={"region": "eu"})
    assert declared.body == {"region": "eu"}
    eu = (await console.call("POST", "/api/compliance/reports", token=token,
                             json={"framework": "soc2", "format": "pdf"})).body
    assert eu["region"] == "eu"
    link = (await console.call("POST", f"/api/compliance/reports/{eu['id']}/share",
                               token=token)).body["token"]
    served = await console.call("GET", f"/api/compliance/reports/{eu['id']}/download",
                                token=token)
    assert served.status == 200
    await console.call("PUT", "/api/compliance/residency", token=token, json={"region": "us"})
    withheld = await console.call("GET", f"/api/compliance/reports/{eu['id']}/download",
                                  token=token)
    assert (withheld.status, withheld.code) == (403, "residency_mismatch")
    assert "generate" in withheld.body["error"]["message"]
    status, body, _ = await _public(console, f"/api/public/compliance/share/{link}")
    assert status == 403 and orjson.loads(body)["error"]["code"] == "residency_mismatch"
    always = await console.call("GET", f"/api/compliance/reports/{unstamped['id']}/download",
                                token=token)
    assert always.status == 200
    bad = await console.call("PUT", "/api/compliance/residency", token=token,
                             json={"region": "mars"})
    assert bad.code == "invalid_value"
    trail = (await console.call("GET", "/api/audit", token=token)).body["data"]
    changes = [(e["before"], e["after"]) for e in trail if e["action"] == "residency.update"]
    assert changes == [({"region": "eu"}, {"region": "us"}), ({"region": None},
                                                                {"region": "eu"})]


async def test_public_keys_pem_and_jwks(console: Console) -> None:
    status, pem, _ = await _public(console, "/api/public/compliance/pubkey")
    assert status == 200 and pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert b"PRIVATE" not in pem
    status, jwks, _ = await _public(console, "/api/public/compliance/pubkey?format=jwks")
    (key,) = orjson.loads(jwks)["keys"]
    assert (key["kty"], key["crv"]) == ("OKP", "Ed25519") and key["kid"]
    assert (await _public(console, "/api/public/compliance/pubkey?kid=nope"))[0] == 404


async def test_the_auditor_sees_the_share_page_in_headless_chromium(console: Console) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install chromium)")
    token = await _live_soc2_with_traffic(console)
    report = (await console.call("POST", "/api/compliance/reports", token=token,
                                 json={"framework": "soc2", "format": "pdf"})).body
    url = (await console.call("POST", f"/api/compliance/reports/{report['id']}/share",
                              token=token)).body["url"]
    dom = await asyncio.to_thread(subprocess.run, [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", url],
        capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr
    assert "Signed soc2 readiness report" in dom.stdout
    assert report["evidence_sha256"] in dom.stdout and report["content_sha256"] in dom.stdout
    assert "openssl pkeyutl" in dom.stdout


async def test_public_keys_published_by_another_replica_are_served_and_verify(
    console: Console
) -> None:
    # Another replica (or a rotation elsewhere) signed with a key this one never held.
    other = Ed25519PrivateKey.generate()
    kid = kid_of(other.public_key())
    await console.relay.services.store.publish_public_keys(
        {kid: public_pem(other.public_key()).decode()})
    status, pem, _ = await _public(console, f"/api/public/compliance/pubkey?kid={kid}")
    assert status == 200 and pem == public_pem(other.public_key())
    _, jwks, _ = await _public(console, "/api/public/compliance/pubkey?format=jwks")
    assert kid in {k["kid"] for k in orjson.loads(jwks)["keys"]}
    # and this replica's own key was published for the others
    published = await console.relay.services.store.published_public_keys()
    assert set(published) >= {kid, *(k["kid"] for k in orjson.loads(jwks)["keys"])}
    document = {"report": "x"}
    evidence = canonical(document)
    statement = make_statement("rep_x", "ws_x", "soc2", "json", None, rfc3339_now(),
                               sha256_hex(evidence), sha256_hex(evidence), kid)
    parts = {"statement": statement, "signature": other.sign(statement),
             "artifact": evidence, "evidence": evidence}
    status, answer, _ = await _public(
        console, "/api/public/compliance/verify", method="POST",
        json={k: base64.b64encode(v).decode() for k, v in parts.items()})
    result = orjson.loads(answer)
    # the signature checks out with the published key; the evidence is not a real report
    # past the key lookup and the signature: only the (made-up) evidence is refused
    assert result["reason"] == "evidence.json is not an orca-relay evidence document"
    stranger = Ed25519PrivateKey.generate()
    unknown = make_statement("rep_x", "ws_x", "soc2", "json", None, rfc3339_now(),
                             sha256_hex(evidence), sha256_hex(evidence),
                             kid_of(stranger.public_key()))
    parts = {**parts, "statement": unknown, "signature": stranger.sign(unknown)}
    _, answer, _ = await _public(
        console, "/api/public/compliance/verify", method="POST",
        json={k: base64.b64encode(v).decode() for k, v in parts.items()})
    assert "kid" in orjson.loads(answer)["reason"]
