"""Ed25519 report-signing key lifecycle: created on first start, 0600, never served.

(Signing and verification of reports arrive with the signed-evidence work; this module
owns the key file from the first start so every installation has one.)
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class SigningKeyError(Exception):
    """The key file exists but is unusable (unreadable, not Ed25519, too permissive)."""


def ensure_signing_key(path: str) -> Ed25519PrivateKey:
    """Load the key at `path`, creating it (mode 0600, parent 0700) when absent."""
    file = Path(path)
    if file.exists():
        return load_signing_key(file)
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL: two workers starting at once must not both write; the loser loads.
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_signing_key(file)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key


def load_signing_key(file: Path) -> Ed25519PrivateKey:
    mode = file.stat().st_mode & 0o777
    if mode & 0o077:
        raise SigningKeyError(
            f"{file}: permissions {mode:o} let others read the signing key; chmod 600 it"
        )
    try:
        key = serialization.load_pem_private_key(file.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{file}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{file}: not an Ed25519 key")
    return key
