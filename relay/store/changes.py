"""What a store update changes, as column → value, shared by both backends: each
backend only turns the columns into its own SQL (`?` or `$n` placeholders)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson

from relay.store.base import QuotaPeriod, rfc3339_now

T = TypeVar("T")


def key_changes(
    name: str | None, quota: tuple[int | None, QuotaPeriod | None] | None,
    guardrail_id: tuple[str | None] | None,
) -> dict[str, Any]:
    sets: dict[str, Any] = {}
    if name is not None:
        sets["name"] = name
    if quota is not None:
        tokens, period = quota
        if (tokens is None) != (period is None):
            raise ValueError("quota: tokens and period are both given or both None")
        sets["quota_tokens"], sets["quota_period"] = tokens, period
    if guardrail_id is not None:
        (sets["guardrail_id"],) = guardrail_id
    return sets


def guardrail_changes(
    name: str | None, mode: str | None, is_default: bool | None,
    rules: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """Always stamps updated_at (a PATCH with nothing in it still says it was seen)."""
    return _present({
        "name": name, "mode": mode,
        "rules": None if rules is None else orjson.dumps(rules).decode(),
        "is_default": None if is_default is None else int(is_default),
    })


def policy_changes(
    name: str | None, mode: str | None, document: dict[str, Any] | None
) -> dict[str, Any]:
    return _present({"name": name, "mode": mode,
                     "document": None if document is None else orjson.dumps(document).decode()})


def _present(changes: dict[str, Any]) -> dict[str, Any]:
    sets = {column: value for column, value in changes.items() if value is not None}
    sets["updated_at"] = rfc3339_now()
    return sets


def drain(first: T | None, get_nowait: Any, empty: type[Exception], limit: int
          ) -> tuple[list[T], bool]:
    """A writer's next group: `first` and whatever else is queued, up to `limit`;
    (group, stopping) — None in the queue means stop after this group."""
    batch: list[T] = [] if first is None else [first]
    stopping = first is None
    while not stopping and len(batch) < limit:
        try:
            item = get_nowait()
        except empty:
            break
        if item is None:
            stopping = True
        else:
            batch.append(item)
    return batch, stopping
