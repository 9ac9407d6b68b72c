"""Password hashing and the first-start bootstrap."""

from __future__ import annotations

from pathlib import Path

from relay.accounts import (
    BOOTSTRAP_EMAIL,
    bootstrap_if_empty,
    hash_password,
    verify_password,
)
from relay.proxy.access import hash_key
from relay.store.sqlite import SQLiteStore


def test_passwords_hash_with_salt_and_verify() -> None:
    first, second = hash_password("s3cret pass"), hash_password("s3cret pass")
    assert first != second and first.startswith("scrypt$")
    assert "s3cret" not in first
    assert verify_password("s3cret pass", first)
    assert not verify_password("s3cret pasS", first)
    assert not verify_password("s3cret pass", "garbage")
    assert not verify_password("s3cret pass", "bcrypt$1$2$3$4$5")


async def test_bootstrap_happens_once(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'orca.db'}")
    await store.open()
    try:
        result = await bootstrap_if_empty(store)
        assert result is not None
        assert result.workspace.plan == "paid"
        found = await store.get_user_by_email(BOOTSTRAP_EMAIL)
        assert found is not None and verify_password(result.admin_password, found[1])
        assert await store.memberships(found[0].id) == [(result.workspace.id, "admin")]
        (key,) = await store.active_keys()
        assert key.key_hash == hash_key(result.key_secret)
        assert await bootstrap_if_empty(store) is None
    finally:
        await store.close()
