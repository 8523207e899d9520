"""``dialbridge cdr``: rows written by the call engine's repository, listed and filtered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dialbridge.app import open_services
from dialbridge.cli import main
from dialbridge.config import load_config
from dialbridge.ops.cdr import parse_since
from dialbridge.store.cdr import CallRecords, Cdr


def _cdr(call_id: str, direction: str, started: float, **fields) -> Cdr:  # noqa: ANN003
    return Cdr(call_id=call_id, direction=direction, scenario=f"dial_{direction}",
               started_at=started, ended_at=started + 60, hangup_cause=fields.pop("cause", "normal"),
               hangup_side="caller", **fields)  # fmt: skip


async def _write(tmp_path: Path, now: float) -> None:
    config = load_config(None, store={"data_dir": str(tmp_path)})
    async with open_services(config) as services:
        records = CallRecords(services.db)
        await records.add(_cdr("a", "in", now - 7200, room="weekly@conference.x", bridged_at=now - 7190,
                               duration=50, loss_fraction=0.0, jitter_ms=3.0))  # fmt: skip
        await records.add(_cdr("b", "in", now - 600, room="board@conference.x", cause="no input"))
        await records.add(_cdr("c", "out", now - 60, destination="+4930901820",
                               bridged_at=now - 50, duration=40, loss_fraction=0.1))  # fmt: skip


def test_cdr_lists_and_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import asyncio
    import time

    now = time.time()
    asyncio.run(_write(tmp_path, now))
    monkeypatch.setenv("DIALBRIDGE_STORE__DATA_DIR", str(tmp_path))

    def ids(*args: str) -> list[str]:
        assert main(["cdr", "--json", *args]) == 0
        return [r["call_id"] for r in json.loads(capsys.readouterr().out)]

    assert ids() == ["c", "b", "a"]
    assert ids("--direction", "in") == ["b", "a"]
    assert ids("--since", "1h") == ["c", "b"]
    assert ids("--room", "WEEKLY") == ["a"]
    assert ids("--cause", "no input") == ["b"]
    assert ids("--outcome", "bridged") == ["c", "a"]
    assert ids("--limit", "1") == ["c"]
    assert main(["cdr"]) == 0
    table = capsys.readouterr().out
    assert "weekly@conference.x" in table and "+4930901820" in table and "poor" in table
    assert main(["cdr", "--since", "last tuesday"]) == 2


def test_since_forms() -> None:
    assert parse_since("90m", now=10_000.0) == 10_000.0 - 5400
    assert parse_since("2d", now=200_000.0) == 200_000.0 - 172_800
    assert parse_since("1700000000") == 1_700_000_000.0
    assert parse_since("2026-11-26T08:00:00") == 1_795_680_000.0
    with pytest.raises(ValueError, match="use 90m"):
        parse_since("soon")
