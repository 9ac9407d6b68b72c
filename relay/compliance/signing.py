"""Ed25519 report-signing keys: the private key file, and every public key ever used.

Rules of this file:
- The private key is created on first start (0600, parent 0700) and never leaves this
  module: callers get `KeyRing.sign(data) -> (kid, signature)`, never the key object.
- A key's id is `kid_of(public key)`: "ed25519-" + the first 16 hex digits of SHA-256 over
  the 32 raw public-key bytes, so anyone holding the public key can recompute it.
- Every public key the ring has loaded is written to `<signing dir>/public/<kid>.pem`
  (write-once). Rotation moves the private key to `<signing dir>/retired/<kid>.pem` and
  creates a new one; reports signed before still verify through the public directory.
- Replicas share the signing directory: a kid not yet in memory is looked up on disk.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

KID_RE = re.compile(r"^ed25519-[0-9a-f]{16}$")


class SigningKeyError(Exception):
    """The key file exists but is unusable (unreadable, not Ed25519, too permissive)."""


class UnknownKidError(KeyError):
    """No public key with this kid was ever used by this installation."""


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


def kid_of(public_key: Ed25519PublicKey) -> str:
    """The key id published in statements and the JWKS; recomputable from the key."""
    return "ed25519-" + hashlib.sha256(public_key.public_bytes_raw()).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM: what `openssl pkeyutl -pubin -inkey` reads."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    """Parse a public PEM, raising ValueError unless it holds an Ed25519 key."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def jwk_of(public_key: Ed25519PublicKey) -> dict[str, str]:
    """RFC 8037 OKP JWK for one key."""
    x = base64.urlsafe_b64encode(public_key.public_bytes_raw()).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid_of(public_key),
            "use": "sig", "alg": "EdDSA"}


class KeyRing:
    """The current signing key plus every public key this installation ever signed with."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._public_dir = self._path.parent / "public"
        self._public: dict[str, Ed25519PublicKey] = {}
        self._private = ensure_signing_key(path)
        self._kid = self._remember(self._private.public_key())
        self._scan()

    @property
    def current_kid(self) -> str:
        """The id of the key `sign` uses now."""
        return self._kid

    def sign(self, data: bytes) -> tuple[str, bytes]:
        """Sign exactly `data` (PureEdDSA, no pre-hash): (kid, raw 64-byte signature)."""
        return self._kid, self._private.sign(data)

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        """The public key for `kid`, also one another replica created after we loaded."""
        if kid not in self._public and KID_RE.match(kid):
            file = self._public_dir / f"{kid}.pem"
            if file.is_file():
                self._load_public(file)
        return self._public.get(kid)

    def kids(self) -> list[str]:
        """Every known kid, the current one first."""
        self._scan()
        return [self._kid, *sorted(k for k in self._public if k != self._kid)]

    def pem(self, kid: str | None = None) -> bytes:
        """Public PEM of the current key, or of `kid` (UnknownKidError if never used)."""
        key = self.public_key(kid or self._kid)
        if key is None:
            raise UnknownKidError(kid)
        return public_pem(key)

    def jwks(self) -> dict[str, Any]:
        """JWKS of every key ever used, the current one first."""
        return {"keys": [jwk_of(self._public[kid]) for kid in self.kids()]}

    def public_pems(self) -> dict[str, str]:
        """Every known public key as kid → PEM text (to publish for other replicas)."""
        self._scan()
        return {kid: public_pem(key).decode() for kid, key in self._public.items()}

    def adopt(self, pems: dict[str, str]) -> None:
        """Learn public keys published elsewhere (e.g. by other replicas, in the store).
        Each is indexed by its recomputed kid, so a row cannot answer for another key."""
        for pem in pems.values():
            try:
                key = load_public_pem(pem.encode())
            except ValueError:
                continue  # not a key: nothing to learn from it
            self._public.setdefault(kid_of(key), key)

    def rotate(self) -> str:
        """Retire the current private key and start signing with a new one; new kid."""
        retired = self._path.parent / "retired"
        retired.mkdir(mode=0o700, exist_ok=True)
        os.replace(self._path, retired / f"{self._kid}.pem")
        self._private = ensure_signing_key(str(self._path))
        self._kid = self._remember(self._private.public_key())
        return self._kid

    def _remember(self, key: Ed25519PublicKey) -> str:
        kid = kid_of(key)
        self._public[kid] = key
        self._public_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        file = self._public_dir / f"{kid}.pem"
        if not file.exists():
            # Write-then-rename: a replica reading the directory never sees half a key.
            tmp = file.with_name(f".{kid}.{os.getpid()}.tmp")
            tmp.write_bytes(public_pem(key))
            os.replace(tmp, file)
        return kid

    def _scan(self) -> None:
        for file in self._public_dir.glob("ed25519-*.pem"):
            if file.stem not in self._public:
                self._load_public(file)

    def _load_public(self, file: Path) -> None:
        try:
            key = load_public_pem(file.read_bytes())
        except (OSError, ValueError) as exc:
            raise SigningKeyError(f"{file}: not an Ed25519 public key PEM ({exc})") from None
        # Index by the recomputed kid: a renamed file cannot make a key answer for another.
        self._public[kid_of(key)] = key


def rotate(path: str) -> KeyRing:
    """Rotate the key file at `path` (see KeyRing.rotate) and return the new ring."""
    ring = KeyRing(path)
    ring.rotate()
    return ring
