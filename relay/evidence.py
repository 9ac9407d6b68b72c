"""Evidence events: what a control decided about one value, without the value.

An event keeps a masked snippet and an HMAC-SHA256 of the value under a per-workspace key
(managed by the store, never exported), so equal values can be correlated within a
workspace while the value itself is never written: not to the store, a log or a metric.
The store gives each event a per-workspace gapless `seq` and chains it to the previous
event's hash (`store.base.chain_hash`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from relay.store.base import rfc3339_now


def _event_ids() -> Iterator[str]:
    """`evt_` + 48 random bits drawn once per process + a counter: unique across replicas
    like `new_id`, without a CSPRNG call for every decision recorded. (Workers are
    spawned, not forked, so each process draws its own prefix.)"""
    prefix = secrets.token_hex(6)
    for n in itertools.count(1):
        yield f"evt_{prefix}{n:08x}"


_EVENT_IDS = _event_ids()


@dataclass(slots=True)  # not frozen: a frozen init costs twice as much, per decision
class EvidenceEvent:
    workspace_id: str
    plane: str  # "guardrail" | "firewall"
    request_id: str
    key_id: str | None
    fields: dict[str, Any]  # mode, verdict, outcome, would_have and the plane's own fields
    id: str = field(default_factory=lambda: next(_EVENT_IDS))
    at: str = field(default_factory=rfc3339_now)

    def document(self) -> dict[str, Any]:
        """The stored and hashed form (seq, prev_hash and hash are added by the store)."""
        return {
            "id": self.id,
            "at": self.at,
            "workspace_id": self.workspace_id,
            "plane": self.plane,
            "request_id": self.request_id,
            "key_id": self.key_id,
            **self.fields,
        }


def masked_snippet(value: str) -> str:
    """A recognisable but unrecoverable trace: at most 2 characters each end of values of
    12 or more characters, asterisks elsewhere (capped), nothing of shorter values."""
    stars = "*" * min(max(len(value) - 4, 4), 12)
    if len(value) < 12:
        return "*" * min(len(value), 12)
    return value[:2] + stars + value[-2:]


def value_hmac(workspace_key: bytes, value: str) -> str:
    data = value.encode("utf-8", "surrogatepass")
    return hmac.new(workspace_key, data, hashlib.sha256).hexdigest()
