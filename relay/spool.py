"""Evidence that cannot reach the store goes to local disk, and back in order later.

Every answer with findings or decisions waits for its evidence to be durable before its
last byte leaves. When the store fails (a database outage), the events are appended to
this process's spool file (JSON lines, fsynced) instead — durable on local disk — and
the answer proceeds: controls keep enforcing from the policies the relay has cached. A
replay task sends the spool to the store in order, in batches, once it answers again;
while anything is spooled, new evidence joins the end of the spool so order holds.
Spool files a stopped process left behind are claimed (renamed) and replayed first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import orjson

from relay.evidence import EvidenceEvent
from relay.metrics import RelayMetrics
from relay.store.base import Store, StoreError

log = logging.getLogger("orca.spool")
REPLAY_EVERY = 1.0  # seconds between replay attempts while the store is down
REPLAY_BATCH = 500


def _line(event: EvidenceEvent) -> bytes:
    return orjson.dumps({"workspace_id": event.workspace_id, "plane": event.plane,
                         "request_id": event.request_id, "key_id": event.key_id,
                         "fields": event.fields, "id": event.id, "at": event.at}) + b"\n"


def _event(line: bytes) -> EvidenceEvent:
    raw = orjson.loads(line)
    return EvidenceEvent(raw["workspace_id"], raw["plane"], raw["request_id"], raw["key_id"],
                         raw["fields"], id=raw["id"], at=raw["at"])


class EvidenceSpool:
    def __init__(self, store: Store, directory: Path, metrics: RelayMetrics) -> None:
        self._store = store
        self._dir = directory
        self._file = directory / f"{os.getpid()}.jsonl"
        self._gauge = metrics.evidence_spooled
        self._spooled = 0
        self._lock = asyncio.Lock()  # guards this process's live spool file
        self._rotations = 0
        self._replayer: asyncio.Task[None] | None = None

    @property
    def spooled(self) -> int:
        return self._spooled

    async def start(self) -> None:
        """Claim spool files left by stopped processes; replay them (and ours) later."""
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for orphan in sorted(self._dir.glob("*.jsonl")):
            if orphan != self._file and not _alive(orphan.stem):
                claimed = orphan.with_name(f"{os.getpid()}-000000-{orphan.name}.claimed")
                with contextlib.suppress(FileNotFoundError):
                    orphan.rename(claimed)
        self._spooled = sum(_count(p) for p in self._pending_files())
        self._gauge.set(self._spooled)
        if self._spooled:
            self._replay_soon()

    async def stop(self) -> None:
        if self._replayer is not None:
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replayer

    async def append(self, events: Sequence[EvidenceEvent]) -> None:
        """Durable when this returns: in the store, or (store down) on local disk."""
        if not self._spooled:
            try:
                await self._store.append_events(events)
                return
            except (StoreError, OSError) as exc:
                log.error("evidence store unavailable (%s); spooling to %s", exc, self._dir)
        async with self._lock:
            await asyncio.to_thread(self._write, b"".join(_line(e) for e in events))
            self._spooled += len(events)
            self._gauge.set(self._spooled)
        self._replay_soon()

    def _write(self, data: bytes) -> None:
        fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _pending_files(self) -> list[Path]:
        """Claimed files in order (orphans first: older evidence), then the live one."""
        claimed = sorted(self._dir.glob(f"{os.getpid()}-*.claimed"))
        return [*claimed, *([self._file] if self._file.exists() else [])]

    async def _rotate(self) -> None:
        """Hand the live spool file to the replayer; new evidence starts a fresh one."""
        async with self._lock:
            if self._file.exists():
                self._rotations += 1
                self._file.rename(self._dir / f"{os.getpid()}-{self._rotations:06d}.claimed")

    def _replay_soon(self) -> None:
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.create_task(self._replay(), name="orca-spool-replay")

    async def _replay(self) -> None:
        while self._spooled:
            try:
                await self._rotate()
                for path in self._pending_files():
                    if path != self._file:
                        await self._replay_file(path)
            except (StoreError, OSError) as exc:
                log.warning("replaying spooled evidence failed (%s); retrying", exc)
            async with self._lock:  # appends meanwhile went to a fresh live file
                self._spooled = sum(_count(p) for p in self._pending_files())
                self._gauge.set(self._spooled)
            if self._spooled:
                await asyncio.sleep(REPLAY_EVERY)
        log.info("spooled evidence replayed; writing to the store again")

    async def _replay_file(self, path: Path) -> None:
        lines = (await asyncio.to_thread(path.read_bytes)).splitlines()
        for start in range(0, len(lines), REPLAY_BATCH):
            batch = [_event(line) for line in lines[start:start + REPLAY_BATCH] if line]
            await self._store.append_events(batch)
            rest = b"".join(line + b"\n" for line in lines[start + REPLAY_BATCH:])
            await asyncio.to_thread(_rewrite, path, rest)


def _rewrite(path: Path, rest: bytes) -> None:
    """What is left of a spool file after a committed batch (atomically), or nothing."""
    if not rest:
        path.unlink(missing_ok=True)
        return
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_bytes(rest)
    os.replace(partial, path)


def _count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _alive(stem: str) -> bool:
    if not stem.isdigit():
        return False
    try:
        os.kill(int(stem), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
