"""The database handle: engines, transactions and migrations.

SQLite (the embedded default) serialises writers on a file lock. Several dialbridge processes
may share one file, so a transaction that will write starts with ``BEGIN IMMEDIATE``: it takes
the write lock up front and waits for it (``busy_timeout``) instead of failing half-way when a
deferred read lock cannot be upgraded. Read-only work uses a plain deferred ``BEGIN`` and runs
beside writers thanks to WAL. PostgreSQL needs none of this: both kinds use one engine.
"""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK_KEY = 0x6469616C  # "dial": PostgreSQL advisory lock serialising migrations


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            self._read_engine = self._sqlite_engine(immediate=False, echo=echo)
            self._write_engine = self._sqlite_engine(immediate=True, echo=echo)
        else:
            engine = create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10)
            self._read_engine = self._write_engine = engine
        # SQLite has one writer at a time per file: queue this process's writers here, where
        # waiting is cheap, instead of in SQLite's sleeping busy handler.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._read_sessions = async_sessionmaker(self._read_engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(self._write_engine, expire_on_commit=False)

    def _sqlite_engine(self, *, immediate: bool, echo: bool) -> AsyncEngine:
        engine = create_async_engine(
            self.url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection, _record):  # noqa: ANN001
            # Let SQLAlchemy, not the driver, emit BEGIN (so we choose which BEGIN).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            conn.exec_driver_sql(begin)

        return engine

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work."""
        async with self._read_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that writes; committed on exit, rolled back on error."""
        if self._write_lock is None:
            async with self._write_sessions() as session, session.begin():
                yield session
            return
        async with self._write_lock, self._write_sessions() as session, session.begin():
            yield session

    async def migrate(self) -> None:
        """Apply Alembic migrations up to head (idempotent; safe with several processes)."""
        lock = self._sqlite_migration_lock()
        if lock is not None:
            # Alembic commits between migration steps on SQLite (no transactional DDL), so
            # BEGIN IMMEDIATE alone does not keep two processes from both running a step: a
            # file lock next to the database serialises whole upgrades (PostgreSQL: below).
            await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            await self._migrate()
        finally:
            if lock is not None:
                lock.close()  # releases the flock

    def _sqlite_migration_lock(self):  # noqa: ANN202
        database = self.url.database if self.is_sqlite else None
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return open(f"{database}.migrate-lock", "a+b")  # noqa: SIM115 (held across awaits)

    async def _migrate(self) -> None:
        async with self._write_engine.connect() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            try:
                await conn.run_sync(_upgrade_to_head)
                await conn.commit()
            finally:
                if not self.is_sqlite:
                    await conn.execute(
                        text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY}
                    )
                    await conn.commit()

    async def current_revision(self) -> str | None:
        async with self._read_engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise if the store cannot answer a trivial query within ``timeout`` seconds."""

        async def _select_one() -> None:
            async with self._read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        await asyncio.wait_for(_select_one(), timeout)

    async def close(self) -> None:
        await self._read_engine.dispose()
        if self._write_engine is not self._read_engine:
            await self._write_engine.dispose()


def _alembic_config(connection):  # noqa: ANN001, ANN202
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "dialbridge.store:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade_to_head(connection) -> None:  # noqa: ANN001
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


def _current_revision(connection) -> str | None:  # noqa: ANN001
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
