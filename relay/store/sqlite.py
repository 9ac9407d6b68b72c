"""SQLite backend: WAL, versioned migrations, one writer thread with group commit.

Theory of operation:
- Every write is a job on one queue, executed by one writer thread that owns the only
  write connection. The thread takes whatever is queued (up to a batch limit), runs
  each job in its own SAVEPOINT (one failing job does not sink its neighbours) and
  COMMITs once: group commit.
- Reads run on one reader thread with its own connection; WAL lets them proceed while
  the writer commits. Several processes (`--workers N`) may open the same file; SQLite's
  file lock serialises their writers and `busy_timeout` absorbs the waits.
- Results travel back to the event loop with call_soon_threadsafe; nothing here blocks
  the loop.
- The methods for keys, guardrails, firewall policies, the evidence feed, sessions and
  the audit trail come from the mixins in sqlite_methods.py (through `_write`/`_read`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from relay.store import sqlite_evidence as ev
from relay.store.base import (
    Conflict,
    Plan,
    Role,
    StoreError,
    User,
    Workspace,
    new_id,
    rfc3339,
    utc_now,
)
from relay.store.changes import drain
from relay.store.migrations import MIGRATIONS
from relay.store.sqlite_methods import (
    ConsoleMethods,
    ControlMethods,
    PackMethods,
    ReportMethods,
)

T = TypeVar("T")
log = logging.getLogger("orca.store")

BATCH_LIMIT = 4096
BUSY_TIMEOUT_MS = 10_000


Job = Callable[[sqlite3.Connection], Any]


class _Pending:
    __slots__ = ("future", "job", "loop")

    def __init__(
        self, job: Job, loop: asyncio.AbstractEventLoop | None, future: asyncio.Future[Any] | None
    ):
        self.job = job
        self.loop = loop
        self.future = future


def _resolve(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # NORMAL in WAL mode: a commit survives the process dying (kill -9); only a power
    # loss can take the last commits back.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class SQLiteStore(ControlMethods, ConsoleMethods, PackMethods, ReportMethods):
    def __init__(self, url: str) -> None:
        self.url = url
        self.path = url.removeprefix("sqlite:///") or ":memory:"
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orca-store-read")
        self._read_conn: sqlite3.Connection | None = None
        self._write_conn: sqlite3.Connection | None = None
        self.on_write_failure: Callable[[int], None] | None = None
        self.commits = 0  # transactions committed (tests check that writes are grouped)

    # ---- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._reader, self._open_sync)
        self._writer = threading.Thread(target=self._write_loop, name="orca-store-write")
        self._writer.daemon = True
        self._writer.start()

    def _open_sync(self) -> None:
        try:
            self._write_conn = _connect(self.path)
            self._write_conn.execute("PRAGMA journal_mode = WAL")
            self._migrate(self._write_conn)
            self._read_conn = _connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            for version, sql in MIGRATIONS:
                if version in done:
                    continue
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, rfc3339(utc_now())),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._reader, self._close_read)
        self._reader.shutdown(wait=True)

    def _close_read(self) -> None:
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None

    # ---- the writer ------------------------------------------------------------------

    def _write_loop(self) -> None:
        conn = self._write_conn
        assert conn is not None
        stopping = False
        while not stopping:
            batch, stopping = drain(self._queue.get(), self._queue.get_nowait, queue.Empty,
                                    BATCH_LIMIT)
            if batch:
                self._commit_batch(conn, batch)
        conn.close()
        self._write_conn = None

    def _commit_batch(self, conn: sqlite3.Connection, jobs: list[_Pending]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for pending in jobs:
                outcomes.append(self._run_in_savepoint(conn, pending.job))
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            log.error("store write failed, group of %d rolled back: %s", len(jobs), exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if self.on_write_failure is not None:
                self.on_write_failure(len(jobs))
            failure = StoreError(f"write failed: {exc}")
            outcomes = [(None, failure)] * len(jobs)
        for pending, (value, error) in zip(jobs, outcomes, strict=True):
            if pending.future is not None and pending.loop is not None:
                try:
                    pending.loop.call_soon_threadsafe(_resolve, pending.future, value, error)
                except RuntimeError:  # the loop is closed; nobody waits any more
                    pass

    @staticmethod
    def _run_in_savepoint(conn: sqlite3.Connection, job: Job) -> tuple[Any, BaseException | None]:
        conn.execute("SAVEPOINT job")
        try:
            value = job(conn)
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK TO SAVEPOINT job")
            conn.execute("RELEASE SAVEPOINT job")
            return None, Conflict(str(exc))
        except Exception as exc:
            conn.execute("ROLLBACK TO SAVEPOINT job")
            conn.execute("RELEASE SAVEPOINT job")
            return None, exc
        conn.execute("RELEASE SAVEPOINT job")
        return value, None

    async def _write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Pending(job, loop, future))
        return await future

    async def _read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._read_conn is None:
                raise StoreError("store is not open")
            return job(self._read_conn)

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    async def flush(self) -> None:
        await self._write(lambda conn: None)

    def queue_depth(self) -> int:
        return self._queue.qsize()

    # ---- reads and writes ------------------------------------------------------------

    async def schema_version(self) -> int:
        row = await self._read(
            lambda c: c.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        )
        return int(row[0] or 0)

    async def state_version(self) -> int:
        row = await self._read(
            lambda c: c.execute("SELECT value FROM meta WHERE name = 'state_version'").fetchone()
        )
        return int(row[0])

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        # Processes sharing a SQLite file share its host: a lock file beside it will do.
        fd = await asyncio.to_thread(os.open, f"{self.path}.{name}.lock",
                                     os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    async def is_empty(self) -> bool:
        row = await self._read(lambda c: c.execute("SELECT COUNT(*) FROM workspaces").fetchone())
        return int(row[0]) == 0

    async def create_workspace(self, name: str, plan: Plan) -> Workspace:
        ws = Workspace(new_id("ws"), name, plan, rfc3339(utc_now()))

        def job(conn: sqlite3.Connection) -> Workspace:
            conn.execute(
                "INSERT INTO workspaces (id, name, plan, created_at) VALUES (?, ?, ?, ?)",
                (ws.id, ws.name, ws.plan, ws.created_at),
            )
            ev.bump_state(conn)
            return ws

        return await self._write(job)

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT id, name, plan, created_at FROM workspaces WHERE id = ?", (workspace_id,)
            ).fetchone()
        )
        return Workspace(*row) if row else None

    async def list_workspaces(self) -> list[Workspace]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, name, plan, created_at FROM workspaces ORDER BY created_at, id"
            ).fetchall()
        )
        return [Workspace(*r) for r in rows]

    async def create_user(self, email: str, password_hash: str) -> User:
        user = User(new_id("usr"), email, rfc3339(utc_now()))

        def job(conn: sqlite3.Connection) -> User:
            conn.execute(
                "INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (user.id, user.email, password_hash, user.created_at),
            )
            return user

        return await self._write(job)

    async def get_user(self, user_id: str) -> User | None:
        row = await self._read(lambda c: c.execute(
            "SELECT id, email, created_at FROM users WHERE id = ?", (user_id,)).fetchone())
        return User(*row) if row else None

    async def get_user_by_email(self, email: str) -> tuple[User, str] | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT id, email, created_at, password_hash FROM users WHERE email = ?", (email,)
            ).fetchone()
        )
        return (User(row[0], row[1], row[2]), row[3]) if row else None

    async def add_membership(self, user_id: str, workspace_id: str, role: Role) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO memberships (user_id, workspace_id, role) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id, workspace_id) DO UPDATE SET role = excluded.role",
                (user_id, workspace_id, role),
            )

        await self._write(job)

    async def memberships(self, user_id: str) -> list[tuple[str, Role]]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT workspace_id, role FROM memberships WHERE user_id = ? "
                "ORDER BY workspace_id",
                (user_id,),
            ).fetchall()
        )
        return [(r[0], r[1]) for r in rows]

    async def workspace_hmac_keys(self) -> dict[str, bytes]:
        return await self._write(ev.ensure_hmac_keys)

    def append_events(self, events: Sequence[Any]) -> asyncio.Future[None]:
        if self._writer is None:
            raise StoreError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        batch = list(events)
        self._queue.put(_Pending(lambda c: ev.append_events(c, batch), loop, future))
        return future

    async def list_events(
        self, workspace_id: str, plane: str, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        return await self._read(
            lambda c: ev.select_events(c, workspace_id, plane, after_seq, limit)
        )
