"""Relay keys and quotas: who may call, and how much they have used.

Keys are `sk-orca-` + 256 random bits (URL-safe base64); the store keeps only their
SHA-256. Each process holds the active keys in memory and re-reads them when the store's
state version moves (checked every `state_refresh_seconds`), so a key created or revoked
by the CLI or another worker is honoured within one refresh, with no store round trip on
the hot path.

Metering costs the hot path two dict updates: tokens are summed in memory per
(key, period bucket) and written to the store in one batch per refresh, so a process
killed with SIGKILL loses at most one refresh interval of usage counts (a graceful stop
writes them). Quota accounting per bucket, per process:
    used = committed (read from the store at the last refresh, all workers)
         + in_transit (metered before the running refresh began; being written)
         + local (metered since)
While a refresh runs, in-transit tokens may be counted twice: the error is always an
over-count, so a quota is never exceeded by more than the tokens of requests that were
already running when it was reached, plus other workers' use during one refresh interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Collection

from relay.errors import AuthenticationFailed, QuotaExceeded
from relay.firewall.policy import Policy, PolicyError, fail_closed_policy, load_policy
from relay.guardrail.policy import (
    Guardrail,
    GuardrailRuleError,
    GuardrailSet,
    fail_closed_guardrail,
    guardrail_from_record,
)
from relay.store.base import (
    QuotaPeriod,
    RelayKey,
    Store,
    UsageDelta,
    new_id,
    quota_period_key,
    rfc3339,
    utc_now,
)

KEY_PREFIX = "sk-orca-"
_KEY_SECRET_BYTES = 32  # 256 bits
_BEARER = "Bearer "
_HEADER_CACHE_LIMIT = 10_000
log = logging.getLogger("orca.access")

Bucket = tuple[str, str]


def generate_key_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(_KEY_SECRET_BYTES)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_relay_key(
    workspace_id: str,
    name: str,
    quota_tokens: int | None = None,
    quota_period: QuotaPeriod | None = None,
) -> tuple[RelayKey, str]:
    """A key record to store and the secret to show once."""
    if (quota_tokens is None) != (quota_period is None):
        raise ValueError("quota_tokens and quota_period go together")
    if quota_tokens is not None and quota_tokens < 0:
        raise ValueError("quota_tokens must be 0 or more")
    secret = generate_key_secret()
    record = RelayKey(
        id=new_id("key"),
        workspace_id=workspace_id,
        name=name,
        key_hash=hash_key(secret),
        prefix=secret[: len(KEY_PREFIX) + 4],
        created_at=rfc3339(utc_now()),
        quota_tokens=quota_tokens,
        quota_period=quota_period,
    )
    return record, secret


def bucket_of(key: RelayKey) -> Bucket | None:
    if key.quota_tokens is None or key.quota_period is None:
        return None
    return key.id, quota_period_key(key.quota_period, utc_now())


class AccessControl:
    """The per-process cache of who may call, under which guardrail and firewall policies."""

    def __init__(
        self, store: Store, refresh_seconds: float, known_detectors: Collection[str] = ()
    ) -> None:
        self._store = store
        self._known_detectors = known_detectors
        self._guardrails: dict[str, Guardrail] = {}
        self._default_guardrail: dict[str, str] = {}  # workspace id → guardrail id
        self._pack_guardrails: dict[str, tuple[Guardrail, ...]] = {}  # workspace id → packs'
        self._guardrail_sets: dict[tuple[str, str | None], GuardrailSet | None] = {}
        self._policies: dict[str, tuple[Policy, ...]] = {}  # workspace id → its policies
        self._hmac_keys: dict[str, bytes] = {}
        self._refresh_seconds = refresh_seconds
        self._by_hash: dict[str, RelayKey] = {}
        # Authorization header → key, for headers already verified: skips the SHA-256 on
        # the hot path. Emptied whenever the keys are re-read, so revocation still holds.
        self._by_header: dict[str, RelayKey] = {}
        self._state_version = -1
        self._committed: dict[Bucket, int] = {}
        self._in_transit: dict[Bucket, int] = {}
        self._local: dict[Bucket, int] = {}
        self._unwritten: dict[Bucket, int] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_forever(), name="orca-access-refresh")

    async def stop(self) -> None:
        """Stop refreshing and write the usage not written yet."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._write_usage()

    async def _write_usage(self) -> None:
        unwritten, self._unwritten = self._unwritten, {}
        if not unwritten:
            return
        try:
            await self._store.add_usage([UsageDelta(k, p, t) for (k, p), t in unwritten.items()])
        except BaseException:
            for bucket, tokens in unwritten.items():  # try again with the next refresh
                self._unwritten[bucket] = self._unwritten.get(bucket, 0) + tokens
            raise

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                # Keep serving from the last good state; the next tick tries again.
                log.exception("refreshing keys and usage from the store failed")

    async def refresh(self) -> None:
        version = await self._store.state_version()
        if version != self._state_version:
            keys = await self._store.active_keys()
            self._by_hash = {k.key_hash: k for k in keys}
            self._by_header = {}
            await self._load_guardrails()
            await self._load_policies()
            self._state_version = version
        await self._refresh_usage()

    async def _load_guardrails(self) -> None:
        guardrails: dict[str, Guardrail] = {}
        for record in await self._store.list_guardrails():
            try:
                guardrails[record.id] = guardrail_from_record(record, self._known_detectors)
            except GuardrailRuleError as exc:
                # A stored rule that no longer parses (e.g. a removed detector): keep the
                # guardrail, enforcing, with every category blocked, rather than drop it.
                log.error("guardrail %s: %s; failing closed", record.id, exc)
                guardrails[record.id] = fail_closed_guardrail(record)
        self._guardrails = guardrails
        self._default_guardrail = {
            g.workspace_id: g.id for g in guardrails.values() if g.is_default
        }
        packs: dict[str, list[Guardrail]] = {}
        for g in guardrails.values():
            if g.source.startswith("pack:"):
                packs.setdefault(g.workspace_id, []).append(g)
        self._pack_guardrails = {ws: tuple(found) for ws, found in packs.items()}
        self._guardrail_sets = {}
        self._hmac_keys = await self._store.workspace_hmac_keys()

    async def _load_policies(self) -> None:
        policies: dict[str, list[Policy]] = {}
        for record in await self._store.list_firewall_policies():
            try:
                policy = load_policy(record.document, id=record.id, name=record.name,
                                     workspace_id=record.workspace_id, mode=record.mode,
                                     source=record.source)
            except PolicyError as exc:
                # A stored policy that no longer parses denies everything rather than
                # silently letting every call through.
                log.error("firewall policy %s: %s; failing closed", record.id, exc)
                policy = fail_closed_policy(record.id, record.workspace_id, record.name,
                                            record.source)
            policies.setdefault(record.workspace_id, []).append(policy)
        self._policies = {ws: tuple(found) for ws, found in policies.items()}

    @property
    def known_detectors(self) -> Collection[str]:
        return self._known_detectors

    def policies_for(self, key: RelayKey) -> tuple[Policy, ...]:
        """Every firewall policy of the key's workspace: each decides on all its traffic."""
        return self._policies.get(key.workspace_id, ())

    def guardrail_for(self, key: RelayKey) -> Guardrail | None:
        """The key's own guardrail, else its workspace's default, else none."""
        if key.guardrail_id is not None:
            own = self._guardrails.get(key.guardrail_id)
            if own is not None:
                return own
        default = self._default_guardrail.get(key.workspace_id)
        return self._guardrails.get(default) if default is not None else None

    def guardrails_for(self, key: RelayKey) -> GuardrailSet | None:
        """The key's guardrail (own, else the workspace default) and every installed
        pack's guardrail of its workspace; None when there is none."""
        cache_key = (key.workspace_id, key.guardrail_id)
        if cache_key not in self._guardrail_sets:
            primary = self.guardrail_for(key)
            members: tuple[Guardrail, ...] = (primary,) if primary is not None else ()
            members += tuple(g for g in self._pack_guardrails.get(key.workspace_id, ())
                             if g is not primary)
            self._guardrail_sets[cache_key] = GuardrailSet(members) if members else None
        return self._guardrail_sets[cache_key]

    def hmac_key(self, workspace_id: str) -> bytes:
        return self._hmac_keys[workspace_id]

    async def _refresh_usage(self) -> None:
        buckets = {b for k in self._by_hash.values() if (b := bucket_of(k)) is not None}
        for bucket, tokens in self._local.items():
            self._in_transit[bucket] = self._in_transit.get(bucket, 0) + tokens
        self._local = {}
        await self._write_usage()  # everything in transit is committed after this
        committed = await self._store.usage(buckets) if buckets else {}
        self._committed = committed
        self._in_transit = {}

    # ---- hot path ------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> RelayKey:
        if authorization:
            known = self._by_header.get(authorization)
            if known is not None:
                return known
        else:
            raise AuthenticationFailed(
                "missing relay key: send 'Authorization: Bearer sk-orca-…'"
            )
        if not authorization.startswith(_BEARER):
            raise AuthenticationFailed("the Authorization header must be 'Bearer sk-orca-…'")
        secret = authorization[len(_BEARER) :].strip()
        if not secret.startswith(KEY_PREFIX):
            raise AuthenticationFailed("this is not an orca relay key (they start with sk-orca-)")
        key = self._by_hash.get(hash_key(secret))
        if key is None:
            raise AuthenticationFailed("invalid or revoked relay key")
        if len(self._by_header) < _HEADER_CACHE_LIMIT:
            self._by_header[authorization] = key
        return key

    def used(self, bucket: Bucket) -> int:
        return (
            self._committed.get(bucket, 0)
            + self._in_transit.get(bucket, 0)
            + self._local.get(bucket, 0)
        )

    def check_quota(self, key: RelayKey) -> None:
        bucket = bucket_of(key)
        if bucket is None:
            return
        assert key.quota_tokens is not None
        used = self.used(bucket)
        if used >= key.quota_tokens:
            raise QuotaExceeded(
                f"this relay key has used {used} of its {key.quota_tokens} tokens "
                f"for the {key.quota_period} period"
            )

    def meter(self, key: RelayKey, tokens: int) -> None:
        """Count tokens against the key: in memory now, in the store with the next refresh.

        Every key accrues a lifetime 'total' bucket; a key with a day or month quota
        also accrues that period's bucket.
        """
        if tokens <= 0:
            return
        unwritten = self._unwritten
        total = (key.id, "total")
        unwritten[total] = unwritten.get(total, 0) + tokens
        bucket = bucket_of(key)
        if bucket is None:
            return
        self._local[bucket] = self._local.get(bucket, 0) + tokens
        if bucket != total:
            unwritten[bucket] = unwritten.get(bucket, 0) + tokens
