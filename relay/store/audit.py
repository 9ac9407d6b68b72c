"""The audit trail's hash chain: an entry's canonical document, and its verification.

An entry's document is {"workspace_id", "seq", "at", "actor", "action", "target",
"before", "after"}; its canonical bytes are orjson with sorted keys; its hash is
`chain_hash(prev_hash, bytes)`, the first entry of a workspace chaining to GENESIS_HASH.
`seq` is gapless per workspace, so an edited, deleted or reordered entry shows up as a
hash that does not match, a broken link or a seq out of line. (Cutting entries off the
end of a chain leaves a shorter intact chain: compare its head with a copy kept apart.)
"""

from __future__ import annotations

from typing import Any

import orjson

from relay.store.base import GENESIS_HASH, chain_hash

DOCUMENT_FIELDS = ("workspace_id", "seq", "at", "actor", "action", "target", "before", "after")


def audit_document(
    workspace_id: str, seq: int, at: str, actor: str, action: str, target: str,
    before: dict[str, Any] | None, after: dict[str, Any] | None,
) -> dict[str, Any]:
    return {"workspace_id": workspace_id, "seq": seq, "at": at, "actor": actor,
            "action": action, "target": target, "before": before, "after": after}


def canonical_bytes(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def verify_audit_chain(entries: list[dict[str, Any]]) -> list[str]:
    """The problems in `entries` (as `Store.audit_chain` returns them: oldest first per
    workspace), [] when every workspace's chain is intact."""
    problems: list[str] = []
    heads: dict[str, tuple[int, str]] = {}  # workspace -> (last seq, last hash)
    for position, entry in enumerate(entries):
        missing = [f for f in (*DOCUMENT_FIELDS, "prev_hash", "hash") if f not in entry]
        if missing:
            problems.append(f"entry {position}: missing {', '.join(missing)}")
            continue
        ws, seq = str(entry["workspace_id"]), entry["seq"]
        where = f"workspace {ws} seq {seq}"
        last_seq, last_hash = heads.get(ws, (0, GENESIS_HASH))
        if not isinstance(seq, int) or seq != last_seq + 1:
            kind = "gap" if isinstance(seq, int) and seq > last_seq + 1 else "out of order"
            problems.append(f"{where}: seq {kind} (follows seq {last_seq})")
        if entry["prev_hash"] != last_hash:
            problems.append(f"{where}: prev_hash is not the previous entry's hash")
        document = {f: entry[f] for f in DOCUMENT_FIELDS}
        if chain_hash(str(entry["prev_hash"]), canonical_bytes(document)) != entry["hash"]:
            problems.append(f"{where}: hash does not match the entry's content")
        heads[ws] = (seq if isinstance(seq, int) else last_seq + 1, str(entry["hash"]))
    return problems
