"""Several processes starting at once on one new SQLite file all migrate it, none fails."""

from __future__ import annotations

import subprocess
import sys

MIGRATE = (
    "import asyncio, sys\n"
    "from dialbridge.store.db import Database\n"
    "async def main():\n"
    "    db = Database(sys.argv[1])\n"
    "    await db.migrate()\n"
    "    print(await db.current_revision())\n"
    "asyncio.run(main())\n"
)


def test_processes_migrating_one_new_sqlite_file_at_once_all_succeed(tmp_path):
    # Alembic commits between steps on SQLite: without a lock around the whole upgrade two
    # processes could both run a step ("table ... already exists"), as four `dialbridge
    # serve` processes started together once did in CI.
    for round_ in range(3):
        url = f"sqlite+aiosqlite:///{tmp_path}/round{round_}.sqlite3"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        results = [p.communicate(timeout=120) for p in procs]
        failures = [err[-800:] for p, (_, err) in zip(procs, results, strict=True) if p.returncode]
        assert not failures, failures
        revisions = {out.strip() for out, _ in results}
        assert len(revisions) == 1 and None not in revisions and "" not in revisions
