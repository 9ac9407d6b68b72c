"""The report-signing key file (created once, 0600, refused when unsafe) and the key ring."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from relay.compliance.signing import (
    KID_RE,
    KeyRing,
    SigningKeyError,
    UnknownKidError,
    ensure_signing_key,
    kid_of,
    load_public_pem,
    rotate,
)


def test_created_once_with_private_permissions(tmp_path: Path) -> None:
    path = tmp_path / "signing" / "ed25519.pem"
    key = ensure_signing_key(str(path))
    assert path.stat().st_mode & 0o777 == 0o600
    again = ensure_signing_key(str(path))
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    signature = again.sign(b"statement")
    key.public_key().verify(signature, b"statement")


def test_unsafe_or_foreign_key_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    ensure_signing_key(str(path))
    os.chmod(path, 0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        ensure_signing_key(str(path))
    path.write_text("not a key")
    os.chmod(path, 0o600)
    with pytest.raises(SigningKeyError, match="not a PEM private key"):
        ensure_signing_key(str(path))


def test_kid_is_recomputable_from_the_public_key(tmp_path: Path) -> None:
    ring = KeyRing(str(tmp_path / "signing" / "ed25519.pem"))
    key = ring.public_key(ring.current_kid)
    assert key is not None
    raw = key.public_bytes_raw()
    assert ring.current_kid == kid_of(key) == "ed25519-" + hashlib.sha256(raw).hexdigest()[:16]
    assert KID_RE.match(ring.current_kid)


def test_ring_publishes_public_keys_only(tmp_path: Path) -> None:
    path = tmp_path / "signing" / "ed25519.pem"
    ring = KeyRing(str(path))
    published = tmp_path / "signing" / "public" / f"{ring.current_kid}.pem"
    assert published.read_bytes() == ring.pem() == ring.pem(ring.current_kid)
    assert b"PRIVATE" not in ring.pem()
    assert load_public_pem(ring.pem()).public_bytes_raw() == _raw(ring, ring.current_kid)
    kid, signature = ring.sign(b"statement")
    assert kid == ring.current_kid and len(signature) == 64
    load_public_pem(published.read_bytes()).verify(signature, b"statement")


def test_jwks_shape(tmp_path: Path) -> None:
    ring = KeyRing(str(tmp_path / "k.pem"))
    (jwk,) = ring.jwks()["keys"]
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "kid": ring.current_kid, "use": "sig",
                   "alg": "EdDSA", "x": jwk["x"]}
    assert "=" not in jwk["x"]
    assert base64.urlsafe_b64decode(jwk["x"] + "=") == _raw(ring, ring.current_kid)


def test_unknown_kid(tmp_path: Path) -> None:
    ring = KeyRing(str(tmp_path / "k.pem"))
    assert ring.public_key("ed25519-ffffffffffffffff") is None
    assert ring.public_key("../k") is None
    with pytest.raises(UnknownKidError):
        ring.pem("ed25519-ffffffffffffffff")
    with pytest.raises(KeyError):  # the admin route maps KeyError to 404
        ring.pem("nope")


def test_rotation_keeps_old_reports_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "signing" / "ed25519.pem"
    ring = KeyRing(str(path))
    old_kid, old_sig = ring.sign(b"old report")
    replica = KeyRing(str(path))  # another process sharing the directory
    new_kid = ring.rotate()
    assert new_kid != old_kid and ring.current_kid == new_kid
    retired = tmp_path / "signing" / "retired" / f"{old_kid}.pem"
    assert retired.stat().st_mode & 0o777 == 0o600
    kid, new_sig = ring.sign(b"new report")
    assert kid == new_kid
    for view in (ring, KeyRing(str(path)), replica):
        old_key, new_key = view.public_key(old_kid), view.public_key(new_kid)
        assert old_key is not None and new_key is not None
        old_key.verify(old_sig, b"old report")
        new_key.verify(new_sig, b"new report")
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new_kid, old_kid]
    assert KeyRing(str(path)).kids() == [new_kid, old_kid]
    assert ring.pem(old_kid) != ring.pem()
    again = rotate(str(path))
    assert len(again.jwks()["keys"]) == 3


def test_corrupt_public_file_is_named(tmp_path: Path) -> None:
    ring = KeyRing(str(tmp_path / "k.pem"))
    (tmp_path / "public" / "ed25519-0000000000000000.pem").write_text("garbage")
    with pytest.raises(SigningKeyError, match=r"ed25519-0000000000000000\.pem"):
        ring.jwks()


def _raw(ring: KeyRing, kid: str) -> bytes:
    key = ring.public_key(kid)
    assert key is not None
    return key.public_bytes_raw()
