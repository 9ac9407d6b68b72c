"""Relay keys and quotas: format, hashing, revocation reaching the cache, accounting."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from relay.errors import AuthenticationFailed, QuotaExceeded
from relay.proxy.access import KEY_PREFIX, AccessControl, bucket_of, hash_key, new_relay_key
from relay.store.base import RelayKey
from relay.store.sqlite import SQLiteStore


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store


async def _key(
    store: SQLiteStore, quota: int | None = None, period: str | None = None
) -> tuple[RelayKey, str]:
    ws = await store.create_workspace("acme", "paid")
    record, secret = new_relay_key(ws.id, "k", quota, period)  # type: ignore[arg-type]
    await store.create_key(record)
    return record, secret


def test_keys_carry_at_least_192_random_bits() -> None:
    secrets = {new_relay_key("ws", "k")[1] for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        assert secret.startswith(KEY_PREFIX)
        body = secret[len(KEY_PREFIX) :]
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        assert len(raw) * 8 >= 192


async def test_only_the_hash_is_stored(store: SQLiteStore, tmp_path: Path) -> None:
    record, secret = await _key(store)
    await store.flush()
    assert record.key_hash == hash_key(secret)
    stored = _all_bytes(tmp_path)
    assert secret.encode() not in stored
    assert secret[len(KEY_PREFIX) + 4 :].encode() not in stored


def _all_bytes(directory: Path) -> bytes:
    return b"".join(f.read_bytes() for f in directory.iterdir())


@pytest.mark.parametrize(
    "header",
    [None, "", "sk-orca-abc", "Bearer", "Bearer sk-other", "Basic c2stb3JjYQ==",
     "Bearer sk-orca-unknown"],
)
async def test_bad_credentials_are_refused(store: SQLiteStore, header: str | None) -> None:
    await _key(store)
    access = AccessControl(store, 60)
    await access.refresh()
    with pytest.raises(AuthenticationFailed):
        access.authenticate(header)


async def test_revocation_by_another_process_reaches_the_cache(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orca.db'}"
    relay_side, cli_side = SQLiteStore(url), SQLiteStore(url)
    await relay_side.open()
    await cli_side.open()
    try:
        record, secret = await _key(cli_side)
        access = AccessControl(relay_side, 60)
        await access.refresh()
        assert access.authenticate(f"Bearer {secret}") == record
        await cli_side.revoke_key(record.id)
        await access.refresh()
        with pytest.raises(AuthenticationFailed):
            access.authenticate(f"Bearer {secret}")
    finally:
        await relay_side.close()
        await cli_side.close()


async def test_quota_is_reached_then_refused(store: SQLiteStore) -> None:
    record, _ = await _key(store, 100, "month")
    access = AccessControl(store, 60)
    await access.refresh()
    access.check_quota(record)
    access.meter(record, 60)
    access.check_quota(record)  # 60 of 100: still allowed
    access.meter(record, 60)  # the request that crosses the line completes
    with pytest.raises(QuotaExceeded, match="120 of its 100"):
        access.check_quota(record)
    await access.refresh()  # committed usage replaces the local count, same total
    with pytest.raises(QuotaExceeded):
        access.check_quota(record)
    bucket = bucket_of(record)
    assert bucket is not None and bucket[1].count("-") == 1  # YYYY-MM
    assert await store.usage([bucket, (record.id, "total")]) == {
        bucket: 120, (record.id, "total"): 120}


async def test_quota_is_shared_between_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orca.db'}"
    one, two = SQLiteStore(url), SQLiteStore(url)
    await one.open()
    await two.open()
    try:
        record, _ = await _key(one, 100, "day")
        worker_one, worker_two = AccessControl(one, 60), AccessControl(two, 60)
        await worker_one.refresh()
        await worker_two.refresh()
        worker_one.meter(record, 150)
        worker_two.check_quota(record)  # worker two has not heard yet...
        await worker_one.refresh()  # worker one's usage is committed
        await worker_two.refresh()  # ...and after its next refresh it has
        with pytest.raises(QuotaExceeded):
            worker_two.check_quota(record)
    finally:
        await one.close()
        await two.close()


async def test_zero_quota_refuses_everything(store: SQLiteStore) -> None:
    record, _ = await _key(store, 0, "total")
    access = AccessControl(store, 60)
    await access.refresh()
    with pytest.raises(QuotaExceeded):
        access.check_quota(record)


def test_quota_fields_go_together() -> None:
    with pytest.raises(ValueError):
        new_relay_key("ws", "k", 10, None)


async def test_a_graceful_stop_writes_the_usage_not_written_yet(store: SQLiteStore) -> None:
    record, _ = await _key(store)
    access = AccessControl(store, 60)
    await access.start()
    access.meter(record, 42)
    assert await store.usage([(record.id, "total")]) == {(record.id, "total"): 0}
    await access.stop()
    assert await store.usage([(record.id, "total")]) == {(record.id, "total"): 42}
