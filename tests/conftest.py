"""Fixtures shared by every test area.

PostgreSQL: ``bin/test`` starts a real server and exports ``DIALBRIDGE_TEST_PG_URL`` (an
account allowed to create databases). Each test that asks for it gets a database of its own.
Without the variable the PostgreSQL variants are skipped, unless
``DIALBRIDGE_REQUIRE_PG=1`` (set by ``bin/test``), which turns that into a failure.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

PG_ENV = "DIALBRIDGE_TEST_PG_URL"


class FakeClock:
    """Seconds since the epoch that only move when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 0, *, days: float = 0) -> None:
        self.now += seconds + days * 86_400


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("DIALBRIDGE_REQUIRE_PG") == "1":
            pytest.fail(f"{PG_ENV} is not set but DIALBRIDGE_REQUIRE_PG=1")
        pytest.skip(f"{PG_ENV} not set: no PostgreSQL server for this run (bin/test starts one)")
    return url


@pytest.fixture
def pg_database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (plain ``postgresql://`` URL), dropped afterwards."""
    import asyncio

    import asyncpg

    admin = _pg_admin_url()
    name = "dialbridge_test_" + secrets.token_hex(6)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        # WITH (FORCE) ends the test's own leftover connections. An autovacuum worker that
        # happens to be on the new database belongs to the superuser; without
        # pg_signal_backend (bin/test grants it) we may not end it: wait for it to leave.
        for attempt in range(20):
            try:
                asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except asyncpg.InsufficientPrivilegeError:
                if attempt == 19:
                    raise
                time.sleep(0.25)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A plain store URL for each backend (the SQLite one is a file in tmp_path)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
async def services_factory(tmp_path: Path) -> AsyncIterator:
    """Build :class:`dialbridge.app.Services` for a config; closed at the end of the test."""
    from contextlib import AsyncExitStack

    from dialbridge.app import open_services
    from dialbridge.config import load_config

    async with AsyncExitStack() as stack:

        async def make(*, store_url: str | None = None, clock=None, **sections):  # noqa: ANN001, ANN202
            store = {"data_dir": str(tmp_path)}
            if store_url:
                store["url"] = store_url
            config = load_config(None, store=store, **sections)
            kwargs = {"clock": clock} if clock else {}
            return await stack.enter_async_context(open_services(config, **kwargs))

        yield make
