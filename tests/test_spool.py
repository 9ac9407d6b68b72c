"""The evidence spool: a stopped process's spool is claimed and replayed in order."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from relay.evidence import EvidenceEvent
from relay.metrics import RelayMetrics
from relay.spool import EvidenceSpool, _line
from relay.store.sqlite import SQLiteStore


async def test_a_dead_processes_spool_is_replayed_in_order(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    ws = await sqlite_store.create_workspace("acme", "paid")
    dead = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    events = [EvidenceEvent(ws.id, "guardrail", f"req_{i}", None, {"verdict": "flag",
                                                                   "n": i})
              for i in range(7)]
    (spool_dir / f"{dead.stdout.strip()}.jsonl").write_bytes(b"".join(map(_line, events)))
    metrics = RelayMetrics()
    spool = EvidenceSpool(sqlite_store, spool_dir, metrics)
    await spool.start()
    assert spool.spooled == 7
    replayer = spool._replayer
    assert replayer is not None
    await replayer  # the replay ends once the spool is empty
    stored = await sqlite_store.list_events(ws.id, "guardrail")
    assert [e["n"] for e in stored] == list(range(7))
    assert [e["id"] for e in stored] == [e.id for e in events]  # same events, not copies
    assert spool.spooled == 0 and list(spool_dir.iterdir()) == []
    assert metrics.evidence_spooled.get() == 0
    await spool.append([EvidenceEvent(ws.id, "guardrail", "req_live", None, {"n": 7})])
    assert [e["n"] for e in await sqlite_store.list_events(ws.id, "guardrail")][-1] == 7
    await spool.stop()
