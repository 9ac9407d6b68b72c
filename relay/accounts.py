"""Users' passwords (scrypt, a memory-hard KDF from the standard library) and the
first-start bootstrap: a default workspace, an admin user and a relay key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from relay.proxy.access import new_relay_key
from relay.store.base import Plan, Role, Store, User, Workspace

# scrypt cost: N=2^15, r=8 → 32 MiB and ~50 ms per hash on this class of machine.
_N, _R, _P, _DKLEN = 2**15, 8, 1, 32
_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN, maxmem=_MAXMEM
    )
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """True when the password matches; a malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def generate_password() -> str:
    return secrets.token_urlsafe(18)


async def create_user(
    store: Store, email: str, workspace_id: str, role: Role, password: str
) -> User:
    user = await store.create_user(email.strip().lower(), hash_password(password))
    await store.add_membership(user.id, workspace_id, role)
    return user


@dataclass(frozen=True)
class BootstrapResult:
    workspace: Workspace
    admin_email: str
    admin_password: str
    key_id: str
    key_secret: str


BOOTSTRAP_EMAIL = "admin@orca.local"


async def bootstrap_if_empty(store: Store, plan: Plan = "paid") -> BootstrapResult | None:
    """On an empty store: a default workspace (paid: a self-hosted operator owns it), an
    admin user and a relay key. Returns the one-time credentials, or None if not empty."""
    if not await store.is_empty():
        return None
    workspace = await store.create_workspace("default", plan)
    password = generate_password()
    await create_user(store, BOOTSTRAP_EMAIL, workspace.id, "admin", password)
    record, secret = new_relay_key(workspace.id, "bootstrap")
    await store.create_key(record)
    return BootstrapResult(workspace, BOOTSTRAP_EMAIL, password, record.id, secret)
