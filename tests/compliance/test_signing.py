"""The report-signing key file: created once, 0600, refused when unsafe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relay.compliance.signing import SigningKeyError, ensure_signing_key


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
