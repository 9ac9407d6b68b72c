"""`orca-relay verify`: check a report bundle (or its parts) offline.

The public key is always the caller's choice (a PEM or JWKS file, or an http(s) URL):
a key shipped inside the bundle would prove nothing.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from relay.cliutil import CommandError, emit
from relay.compliance.signing import kid_of, load_public_pem
from relay.compliance.statement import VerifyResult, strict_json_loads, verify_bundle, verify_parts

MAX_KEY_BYTES = 1024 * 1024
PARTS = ("evidence", "statement", "signature")


def _read(label: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"{label}: cannot read {path} ({exc.strerror})") from None


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:  # http(s) only: see load_keys
            data: bytes = response.read(MAX_KEY_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CommandError(f"--pubkey: cannot fetch {url} ({exc})") from None
    if len(data) > MAX_KEY_BYTES:
        raise CommandError(f"--pubkey: {url} answered more than 1 MiB")
    return data


def load_keys(source: str) -> dict[str, Ed25519PublicKey]:
    """kid -> key from a PEM public key, a JWKS or a single JWK (file path or URL)."""
    url = source.lower().startswith(("http://", "https://"))
    data = _fetch(source) if url else _read("--pubkey", source)
    if b"-----BEGIN" in data:
        try:
            key = load_public_pem(data)
        except ValueError as exc:
            raise CommandError(f"--pubkey: {source} is not an Ed25519 public key ({exc})"
                               ) from None
        return {kid_of(key): key}
    try:
        doc = strict_json_loads(data)
    except ValueError:
        raise CommandError(f"--pubkey: {source} is neither a PEM public key nor JSON") from None
    jwks = doc.get("keys") if isinstance(doc, dict) and "keys" in doc else [doc]
    if not isinstance(jwks, list):
        raise CommandError(f"--pubkey: {source}: 'keys' is not a list")
    keys = dict(_jwk(j) for j in jwks if isinstance(j, dict) and j.get("crv") == "Ed25519")
    if not keys:
        raise CommandError(f"--pubkey: {source} holds no Ed25519 (OKP) key")
    return keys


def _jwk(jwk: dict[str, Any]) -> tuple[str, Ed25519PublicKey]:
    try:
        x = str(jwk["x"])
        raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        key = Ed25519PublicKey.from_public_bytes(raw)
    except (KeyError, ValueError, binascii.Error) as exc:
        raise CommandError(f"--pubkey: a JWK's 'x' is not an Ed25519 key ({exc})") from None
    kid = jwk.get("kid")
    return (kid if isinstance(kid, str) else kid_of(key)), key


def run(args: argparse.Namespace) -> int:
    """Exit 0 when the signature and both hashes verify, 1 otherwise (with the reason)."""
    given = [name for name in PARTS if getattr(args, name)]
    if given and len(given) != len(PARTS):
        raise CommandError("verifying parts needs --evidence, --statement and --signature")
    keys = load_keys(args.pubkey)
    if given:
        result = verify_parts(_read("--statement", args.statement),
                              _read("--signature", args.signature),
                              _read("ARTIFACT", args.file), _read("--evidence", args.evidence),
                              keys.get)
    else:
        result = verify_bundle(_read("BUNDLE", args.file), keys.get)
    if not result.valid and result.kid is not None and result.kid not in keys:
        reason = f"{result.reason} (--pubkey holds {', '.join(sorted(keys))})"
        result = VerifyResult(**{**result.as_dict(), "reason": reason})
    emit(args, result.as_dict(), _text(result))
    return 0 if result.valid else 1


def _text(result: VerifyResult) -> str:
    if not result.valid:
        return f"INVALID: {result.reason}"
    return (f"valid: report {result.report_id} signed by {result.kid}\n"
            f"  evidence.json SHA-256 {result.evidence_sha256}\n"
            f"  report        SHA-256 {result.content_sha256}")


def add_commands(sub: Any) -> None:
    """Register `verify` on the top-level subparsers."""
    p = sub.add_parser(
        "verify", help="verify a signed compliance report bundle offline",
        description="Verify a report bundle (BUNDLE.zip) or its parts (ARTIFACT with "
        "--evidence, --statement and --signature) against a public key you trust: the "
        "Ed25519 signature over statement.json, then the SHA-256 of evidence.json and of "
        "the report against the statement. Exit 0 valid, 1 invalid (with the reason).")
    p.add_argument("file", metavar="BUNDLE.zip|ARTIFACT")
    p.add_argument("--pubkey", required=True, metavar="FILE_OR_URL",
                   help="PEM public key or JWKS, as a file or an http(s) URL "
                   "(e.g. https://HOST/api/public/compliance/pubkey?format=jwks)")
    p.add_argument("--evidence", metavar="FILE", help="evidence.json (parts mode)")
    p.add_argument("--statement", metavar="FILE", help="statement.json (parts mode)")
    p.add_argument("--signature", metavar="FILE", help="statement.sig (parts mode)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)

