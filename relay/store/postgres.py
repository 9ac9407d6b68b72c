"""PostgreSQL backend: an asyncpg pool, the shared versioned migrations, one writer task
with group commit.

Theory of operation (the SQLite backend's, on a server):
- `open()` creates the pool (`?pool_size=N` in the URL, default 10, is ours and is taken
  off before connecting; other query parameters, e.g. `?search_path=s`, become server
  settings) and applies the migrations in one transaction under an advisory lock, so two
  replicas starting at once do not both migrate.
- Every write is a job on one in-memory queue, run by one writer task: it takes whatever
  is queued (up to a batch limit) and commits it in one transaction (group commit). The
  jobs first run back to back; if one fails, the transaction is rolled back and the
  group runs again with a SAVEPOINT per job, so a failing job does not sink its
  neighbours. A deadlock with another replica rolls the group back and runs it again.
- Evidence and audit chains are sequenced under a transaction-level advisory lock per
  workspace and chain. The writer takes every lock its group names first, in key order,
  so groups of different replicas cannot deadlock on them; the jobs take them again
  (re-entrant) before reading the chain head.
- Reads run on pooled connections and see committed data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from relay.store import postgres_jobs as pj
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
from relay.store.postgres_jobs import Conn, Job
from relay.store.postgres_methods import ConsoleMethods, ControlMethods, PackMethods, ReportMethods

T = TypeVar("T")
log = logging.getLogger("orca.store")

BATCH_LIMIT = 4096
DEFAULT_POOL_SIZE = 10
GROUP_ATTEMPTS = 8  # a group that deadlocks with another replica's is run again
MIGRATION_LOCK = "orca-relay:migrations"
_RETRY = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


class _Pending:
    __slots__ = ("future", "job", "locks")

    def __init__(self, job: Job[Any], locks: tuple[str, ...], future: asyncio.Future[Any]):
        self.job = job
        self.locks = locks
        self.future = future


def split_url(url: str) -> tuple[str, int]:
    """(the DSN for asyncpg, the pool size): `pool_size` is ours, not a server setting."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    sizes = [value for name, value in query if name == "pool_size"]
    try:
        size = int(sizes[-1]) if sizes else DEFAULT_POOL_SIZE
    except ValueError:
        raise StoreError(
            f"ORCA_DATABASE_URL: pool_size must be a number, not {sizes[-1]!r}") from None
    if size < 1:
        raise StoreError("ORCA_DATABASE_URL: pool_size must be at least 1")
    rest = urlencode([(name, value) for name, value in query if name != "pool_size"])
    return urlunsplit(parts._replace(query=rest)), size


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def store_error(exc: BaseException) -> BaseException:
    """What a caller sees of a failure: Conflict for an integrity rule (unique, foreign key,
    check, not null: what SQLite calls IntegrityError), StoreError for other database
    failures, anything else (ValueError, ...) as it is."""
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return Conflict(str(exc))
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
        return StoreError(f"{type(exc).__name__}: {exc}")
    return exc


async def _noop(conn: Conn) -> None:
    return None


class PostgresStore(ControlMethods, ConsoleMethods, PackMethods, ReportMethods):
    def __init__(self, url: str) -> None:
        self.url = url
        self.dsn, self.pool_size = split_url(url)
        self._pool: Any = None
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.on_write_failure: Callable[[int], None] | None = None
        self.commits = 0  # transactions committed (tests check that writes are grouped)

    # ---- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size)
            async with self._pool.acquire() as conn:
                await self._migrate(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ValueError) as exc:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            raise StoreError(
                f"cannot open PostgreSQL store at {redacted(self.url)}: {exc}") from exc
        self._queue = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name="orca-store-write")

    @staticmethod
    async def _migrate(conn: Conn) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1::bigint)",
                               pj.lock_key(MIGRATION_LOCK))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in MIGRATIONS:
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    version, rfc3339(utc_now()))

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put_nowait(None)
            await self._writer
            self._writer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # ---- the writer ------------------------------------------------------------------

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = drain(await self._queue.get(), self._queue.get_nowait,
                                    asyncio.QueueEmpty, BATCH_LIMIT)
            if batch:
                await self._commit_batch(batch)

    async def _commit_batch(self, jobs: list[_Pending]) -> None:
        isolate = False
        outcomes: list[tuple[Any, BaseException | None]] = []
        for attempt in range(GROUP_ATTEMPTS):
            try:
                async with self._pool.acquire() as conn:
                    outcomes = await self._run_group(conn, jobs, isolate)
                self.commits += 1
                break
            except _JobFailed as failed:
                if len(jobs) == 1:  # its own group: nothing else to save
                    outcomes = [(None, store_error(failed.error))]
                    break
                isolate = True
            except _RETRY as exc:
                log.warning("store write group of %d deadlocked (attempt %d): %s",
                            len(jobs), attempt + 1, exc)
                await asyncio.sleep(random.uniform(0.001, 0.02) * (attempt + 1))
            except Exception as exc:
                outcomes = self._group_failed(jobs, exc)
                break
        else:
            outcomes = self._group_failed(
                jobs, StoreError(f"no commit in {GROUP_ATTEMPTS} attempts"))
        for pending, (value, error) in zip(jobs, outcomes, strict=True):
            if pending.future.done():
                continue
            if error is not None:
                pending.future.set_exception(error)
            else:
                pending.future.set_result(value)

    def _group_failed(self, jobs: list[_Pending], exc: BaseException
                      ) -> list[tuple[Any, BaseException | None]]:
        log.error("store write failed, group of %d rolled back: %s", len(jobs), exc)
        if self.on_write_failure is not None:
            self.on_write_failure(len(jobs))
        failure = StoreError(f"write failed: {exc}")
        return [(None, failure)] * len(jobs)

    @staticmethod
    async def _run_group(conn: Conn, jobs: list[_Pending], isolate: bool
                         ) -> list[tuple[Any, BaseException | None]]:
        outcomes: list[tuple[Any, BaseException | None]] = []
        async with conn.transaction():
            for key in sorted({pj.lock_key(name) for p in jobs for name in p.locks}):
                await conn.execute("SELECT pg_advisory_xact_lock($1::bigint)", key)
            for pending in jobs:
                if not isolate:
                    try:
                        outcomes.append((await pending.job(conn), None))
                    except _RETRY:
                        raise
                    except Exception as exc:
                        raise _JobFailed(exc) from exc
                    continue
                try:
                    async with conn.transaction():  # a savepoint
                        value = await pending.job(conn)
                except _RETRY:
                    raise
                except Exception as exc:
                    outcomes.append((None, store_error(exc)))
                else:
                    outcomes.append((value, None))
        return outcomes

    async def _write(self, job: Job[T], locks: tuple[str, ...] = ()) -> T:
        if self._writer is None:
            raise StoreError("store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(job, locks, future))
        return await future

    async def _read(self, job: Job[T]) -> T:
        if self._pool is None:
            raise StoreError("store is not open")
        try:
            async with self._pool.acquire() as conn:
                return await job(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise store_error(exc) from exc

    async def flush(self) -> None:
        await self._write(_noop)

    def queue_depth(self) -> int:
        return self._queue.qsize()

    # ---- reads and writes ------------------------------------------------------------

    async def _value(self, sql: str, *args: Any) -> Any:
        async def job(conn: Conn) -> Any:
            return await conn.fetchval(sql, *args)

        return await self._read(job)

    async def schema_version(self) -> int:
        return int(await self._value("SELECT MAX(version) FROM schema_migrations") or 0)

    async def state_version(self) -> int:
        return int(await self._value("SELECT value FROM meta WHERE name = 'state_version'"))

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        # A session-level advisory lock on a connection held for the whole block.
        async with self._pool.acquire() as conn:
            key = pj.lock_key(f"exclusive:{name}")
            await conn.execute("SELECT pg_advisory_lock($1::bigint)", key)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1::bigint)", key)

    async def is_empty(self) -> bool:
        return int(await self._value("SELECT COUNT(*) FROM workspaces")) == 0

    async def create_workspace(self, name: str, plan: Plan) -> Workspace:
        ws = Workspace(new_id("ws"), name, plan, rfc3339(utc_now()))

        async def job(conn: Conn) -> Workspace:
            await conn.execute(
                "INSERT INTO workspaces (id, name, plan, created_at) VALUES ($1, $2, $3, $4)",
                ws.id, ws.name, ws.plan, ws.created_at)
            await pj.bump_state(conn)
            return ws

        return await self._write(job, (pj.STATE_LOCK,))

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        async def job(conn: Conn) -> list[Any]:
            rows: list[Any] = await conn.fetch(sql, *args)
            return rows

        return await self._read(job)

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        rows = await self._rows(
            "SELECT id, name, plan, created_at FROM workspaces WHERE id = $1", workspace_id)
        return Workspace(*rows[0]) if rows else None

    async def list_workspaces(self) -> list[Workspace]:
        rows = await self._rows('SELECT id, name, plan, created_at FROM workspaces '
                                'ORDER BY created_at COLLATE "C", id COLLATE "C"')
        return [Workspace(*r) for r in rows]

    async def create_user(self, email: str, password_hash: str) -> User:
        user = User(new_id("usr"), email, rfc3339(utc_now()))

        async def job(conn: Conn) -> User:
            await conn.execute(
                "INSERT INTO users (id, email, password_hash, created_at) "
                "VALUES ($1, $2, $3, $4)", user.id, user.email, password_hash, user.created_at)
            return user

        return await self._write(job)

    async def get_user(self, user_id: str) -> User | None:
        rows = await self._rows("SELECT id, email, created_at FROM users WHERE id = $1", user_id)
        return User(*rows[0]) if rows else None

    async def get_user_by_email(self, email: str) -> tuple[User, str] | None:
        rows = await self._rows(
            "SELECT id, email, created_at, password_hash FROM users WHERE email = $1", email)
        return (User(rows[0][0], rows[0][1], rows[0][2]), rows[0][3]) if rows else None

    async def add_membership(self, user_id: str, workspace_id: str, role: Role) -> None:
        async def job(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO memberships (user_id, workspace_id, role) VALUES ($1, $2, $3) "
                "ON CONFLICT (user_id, workspace_id) DO UPDATE SET role = excluded.role",
                user_id, workspace_id, role)

        await self._write(job)

    async def memberships(self, user_id: str) -> list[tuple[str, Role]]:
        rows = await self._rows("SELECT workspace_id, role FROM memberships WHERE user_id = $1 "
                                'ORDER BY workspace_id COLLATE "C"', user_id)
        return [(r[0], r[1]) for r in rows]

    async def workspace_hmac_keys(self) -> dict[str, bytes]:
        return await self._write(pj.ensure_hmac_keys)

    def append_events(self, events: Sequence[Any]) -> asyncio.Future[None]:
        if self._writer is None:
            raise StoreError("store is not open")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = list(events)
        locks = tuple(sorted({pj.evidence_lock(event.workspace_id) for event in batch}))

        async def job(conn: Conn) -> None:
            await pj.append_events(conn, batch)

        self._queue.put_nowait(_Pending(job, locks, future))
        return future

    async def list_events(
        self, workspace_id: str, plane: str, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        return await self._read(
            lambda c: pj.select_events(c, workspace_id, plane, after_seq, limit))


class _JobFailed(Exception):
    """A job failed while its group ran without savepoints: run the group isolated."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
