"""PIN guessing windows in the store (shared by processes) and CDR rows, with a fake clock."""

from __future__ import annotations

import pytest

from dialbridge.store.cdr import CallRecords, Cdr
from dialbridge.store.db import Database
from dialbridge.store.pin_guard import PinGuard, PinGuardPolicy

POLICY = PinGuardPolicy(
    window_seconds=3600, delay_after=3, refuse_after=5, delay_seconds=2, max_delay_seconds=5,
    global_window_seconds=600, global_delay_after=8, global_refuse_after=12,
)  # fmt: skip


@pytest.fixture
async def db(store_url: str):  # noqa: ANN201
    database = Database(_async(store_url))
    await database.migrate()
    yield database
    await database.close()


def _async(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return (
        "sqlite+aiosqlite://" if scheme.startswith("sqlite") else "postgresql+asyncpg://"
    ) + rest


async def test_failures_add_delay_then_refusal_then_age_out(db, clock) -> None:
    guard = PinGuard(db, POLICY, clock=clock)
    assert (await guard.verdict("+4930111")).delay == 0
    for _ in range(3):
        await guard.record_failure("+4930111")
    v = await guard.verdict("+4930111")
    assert not v.refused and v.delay == 2 and v.caller_failures == 3
    await guard.record_failure("+4930111")
    assert (await guard.verdict("+4930111")).delay == 4
    await guard.record_failure("+4930111")
    assert (await guard.verdict("+4930111")).refused
    assert not (await guard.verdict("+4930222")).refused  # another caller is not affected
    clock.advance(3601)
    v = await guard.verdict("+4930111")
    assert not v.refused and v.caller_failures == 0


async def test_a_guess_spread_over_many_numbers_is_slowed_then_refused(db, clock) -> None:
    guard = PinGuard(db, POLICY, clock=clock)
    for n in range(9):
        await guard.record_failure(f"+49301{n:04d}")
    v = await guard.verdict("+4930999")
    assert not v.refused and v.delay > 0 and v.global_failures == 9
    for n in range(3):
        await guard.record_failure(f"+49302{n:04d}")
    assert (await guard.verdict("+4930999")).refused
    clock.advance(601)
    assert not (await guard.verdict("+4930999")).refused


async def test_two_guards_on_one_store_share_the_counts(db, clock) -> None:
    a, b = PinGuard(db, POLICY, clock=clock), PinGuard(db, POLICY, clock=clock)
    for _ in range(5):
        await a.record_failure("+4930111")
    assert (await b.verdict("+4930111")).refused


async def test_the_store_keeps_no_caller_numbers_and_sweep_forgets_old_rows(db, clock) -> None:
    guard = PinGuard(db, POLICY, clock=clock)
    await guard.record_failure("+4930123456712")
    async with db.read() as session:
        from sqlalchemy import select

        from dialbridge.store.models import PinFailure

        rows = (await session.scalars(select(PinFailure))).all()
    assert rows and all("4930123456712" not in r.caller for r in rows)
    clock.advance(3601)
    assert await guard.sweep() == 1


async def test_cdr_rows_round_trip_and_list_newest_first(db) -> None:
    records = CallRecords(db)
    first = Cdr(call_id="a", direction="in", scenario="dial_in", started_at=10, ended_at=20,
                hangup_cause="normal", hangup_side="caller", duration=8.5,
                caller="+49 ••• •••• 12", room="r@conference.x", pin="123456",
                loss_fraction=0.01, jitter_ms=3.5)  # fmt: skip
    second = Cdr(call_id="b", direction="out", scenario="dial_out", started_at=30, ended_at=31,
                 hangup_cause="premium-rate number", hangup_side="dialbridge", sip_status=403,
                 destination="+499001234567")  # fmt: skip
    await records.add(first)
    await records.add(second)
    assert await records.get("a") == first
    assert [c.call_id for c in await records.list()] == ["b", "a"]
    assert [c.call_id for c in await records.list(direction="in")] == ["a"]
