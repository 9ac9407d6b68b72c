"""`orca-relay verify`, in process through relay.cli.main: bundle, parts, keys, tampering."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from relay.cli import main
from relay.compliance.signing import KeyRing
from tests.compliance.test_statement import Report, make_report


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing(str(tmp_path / "signing" / "ed25519.pem"))


@pytest.fixture
def files(ring: KeyRing, tmp_path: Path) -> dict[str, Path]:
    report = make_report(ring, "pdf")
    out = {"bundle": tmp_path / "bundle.zip", "artifact": tmp_path / "report.pdf",
           "evidence": tmp_path / "evidence.json", "statement": tmp_path / "statement.json",
           "signature": tmp_path / "statement.sig", "pem": tmp_path / "pub.pem",
           "jwks": tmp_path / "jwks.json"}
    _write(out, report, ring)
    return out


def _write(out: dict[str, Path], report: Report, ring: KeyRing) -> None:
    out["bundle"].write_bytes(report.zip)
    out["artifact"].write_bytes(report.artifact)
    out["evidence"].write_bytes(report.evidence)
    out["statement"].write_bytes(report.statement)
    out["signature"].write_bytes(report.signature)
    out["pem"].write_bytes(ring.pem())
    out["jwks"].write_text(json.dumps(ring.jwks()))


def _parts(files: dict[str, Path]) -> list[str]:
    return [str(files["artifact"]), "--evidence", str(files["evidence"]), "--statement",
            str(files["statement"]), "--signature", str(files["signature"])]


def test_bundle_valid(files: dict[str, Path], ring: KeyRing,
                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(files["bundle"]), "--pubkey", str(files["pem"])]) == 0
    out = capsys.readouterr().out
    claims = json.loads(files["statement"].read_bytes())
    assert "valid: report rep_01" in out and ring.current_kid in out
    assert claims["evidence_sha256"] in out and claims["content_sha256"] in out


def test_parts_valid_with_jwks_and_json(files: dict[str, Path], ring: KeyRing,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", *_parts(files), "--pubkey", str(files["jwks"]), "--json"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 0 and answer["valid"] is True and answer["kid"] == ring.current_kid
    assert set(answer) == {"valid", "reason", "report_id", "kid", "evidence_sha256",
                           "content_sha256"}


def test_tampered_is_exit_1_with_reason(files: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(files["artifact"].read_bytes())
    data[len(data) // 2] ^= 1
    files["artifact"].write_bytes(bytes(data))
    assert main(["verify", *_parts(files), "--pubkey", str(files["pem"])]) == 1
    assert "INVALID: report.pdf SHA-256" in capsys.readouterr().out
    with zipfile.ZipFile(files["bundle"]) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["statement.json"] = members["statement.json"].replace(b'"eu"', b'"us"')
    with zipfile.ZipFile(files["bundle"], "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    assert main(["verify", str(files["bundle"]), "--pubkey", str(files["pem"]), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["valid"] is False


def test_wrong_key_names_what_was_given(files: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    other = KeyRing(str(tmp_path / "other" / "k.pem"))
    (tmp_path / "other.pem").write_bytes(other.pem())
    assert main(["verify", str(files["bundle"]), "--pubkey", str(tmp_path / "other.pem")]) == 1
    out = capsys.readouterr().out
    assert "no public key for kid" in out and other.current_kid in out


def test_rotated_key_still_verifies_old_bundle(files: dict[str, Path], ring: KeyRing,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ring.rotate()
    files["jwks"].write_text(json.dumps(ring.jwks()))
    assert main(["verify", str(files["bundle"]), "--pubkey", str(files["jwks"])]) == 0


def test_pubkey_from_url(files: dict[str, Path]) -> None:
    pem = files["pem"].read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(pem)

        def log_message(self, *args: object) -> None:
            pass

    for url in _serve(Handler):
        assert main(["verify", str(files["bundle"]), "--pubkey", url]) == 0


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/public/compliance/pubkey"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_usage_errors(files: dict[str, Path], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(files["artifact"]), "--evidence", str(files["evidence"]),
                 "--pubkey", str(files["pem"])]) == 1
    assert "needs --evidence, --statement and --signature" in capsys.readouterr().err
    (tmp_path / "junk.pem").write_text("hello")
    assert main(["verify", str(files["bundle"]), "--pubkey", str(tmp_path / "junk.pem")]) == 1
    assert "neither a PEM public key nor JSON" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing.zip"), "--pubkey", str(files["pem"])]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["verify", str(files["bundle"]), "--pubkey", "http://127.0.0.1:9/x"]) == 1
    assert "cannot fetch" in capsys.readouterr().err


def test_subprocess_help_and_run(files: dict[str, Path]) -> None:
    cmd = [sys.executable, "-c", "import sys; from relay.cli import main; sys.exit(main())"]
    helped = subprocess.run([*cmd, "verify", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--pubkey FILE_OR_URL" in helped.stdout
    ran = subprocess.run([*cmd, "verify", str(files["bundle"]), "--pubkey", str(files["pem"]),
                          "--json"], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["valid"] is True
