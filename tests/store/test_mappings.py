"""The mapping repository against real SQLite and PostgreSQL, with a controllable clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from dialbridge.store.db import Database
from dialbridge.store.mappings import (
    ConferenceMappings,
    MappingPolicy,
    PinUnavailable,
    generate_pin,
)

ROOM_A = "alpha@conference.meet.example.com"
ROOM_B = "bravo@conference.meet.example.com"
DAY = 86_400


@pytest.fixture
async def db(store_url: str):
    from dialbridge.config import StoreConfig

    database = Database(StoreConfig(url=store_url).effective_url)
    await database.migrate()
    yield database
    await database.close()


def repo(db: Database, clock, **policy) -> ConferenceMappings:
    defaults = {
        "pin_length": 10,
        "expire_days": 30,
        "quarantine_days": 30,
        "refresh_interval_seconds": 0,
    }
    return ConferenceMappings(db, MappingPolicy(**{**defaults, **policy}), clock=clock)


def test_generated_pins_have_the_length_and_no_leading_zero() -> None:
    for length in (6, 10, 13):
        pins = {generate_pin(length) for _ in range(2000)}
        assert all(len(p) == length and p[0] != "0" and p.isdigit() for p in pins)
        assert len(pins) > 1990  # a CSPRNG, not a counter or a hash of the room
    first_digits = {generate_pin(10)[0] for _ in range(500)}
    assert first_digits == set("123456789")


async def test_migrations_are_idempotent_and_reach_head(db: Database) -> None:
    from alembic.script import ScriptDirectory

    from dialbridge.store.db import _alembic_config

    await db.migrate()
    head = ScriptDirectory.from_config(_alembic_config(None)).get_current_head()
    assert head is not None and head >= "0002"
    assert await db.current_revision() == head


async def test_first_sight_creates_and_second_returns_the_same_pin(db, clock) -> None:
    mappings = repo(db, clock)
    first = await mappings.for_conference(ROOM_A)
    again = await mappings.for_conference(ROOM_A)
    other = await mappings.for_conference(ROOM_B)
    assert first.pin == again.pin
    assert other.pin != first.pin
    assert len(first.pin) == 10
    assert (await mappings.for_pin(first.pin)).conference == ROOM_A


async def test_unknown_and_malformed_pins_find_nothing(db, clock) -> None:
    mappings = repo(db, clock)
    await mappings.for_conference(ROOM_A)
    assert await mappings.for_pin("1234567890") is None
    assert await mappings.for_pin("12ab") is None


async def test_mapping_expires_after_last_use(db, clock) -> None:
    mappings = repo(db, clock)
    pin = (await mappings.for_conference(ROOM_A)).pin
    clock.advance(days=29.9)
    assert await mappings.for_pin(pin) is not None  # still valid, and this use refreshes it
    clock.advance(days=29.9)
    assert await mappings.for_pin(pin) is not None  # 59.8 days after creation: refreshed
    clock.advance(days=30.1)
    assert await mappings.for_pin(pin) is None  # 30.1 days without use: expired


async def test_lookup_by_room_refreshes_too(db, clock) -> None:
    mappings = repo(db, clock)
    pin = (await mappings.for_conference(ROOM_A)).pin
    for _ in range(3):
        clock.advance(days=20)
        assert (await mappings.for_conference(ROOM_A)).pin == pin


async def test_dial_in_touch_refreshes(db, clock) -> None:
    mappings = repo(db, clock, refresh_interval_seconds=3600)
    pin = (await mappings.for_conference(ROOM_A)).pin
    clock.advance(days=29)
    assert await mappings.touch(pin)
    clock.advance(days=29)
    assert (await mappings.show(pin)) is not None
    clock.advance(days=2)
    assert not await mappings.touch(pin)


async def test_refresh_is_throttled_by_interval(db, clock) -> None:
    mappings = repo(db, clock, refresh_interval_seconds=3600)
    created = await mappings.for_conference(ROOM_A)
    clock.advance(1800)
    assert (await mappings.for_pin(created.pin)).last_used_at == created.last_used_at
    clock.advance(1800)
    assert (await mappings.for_pin(created.pin)).last_used_at == clock.now


async def test_expired_room_gets_a_new_pin_and_old_pin_stays_quarantined(db, clock) -> None:
    scripted = iter(["1111111111", "2222222222", "1111111111", "3333333333", "1111111111"])
    mappings = ConferenceMappings(
        db,
        MappingPolicy(
            pin_length=10, expire_days=30, quarantine_days=30, refresh_interval_seconds=0
        ),
        clock=clock,
        pin_source=lambda _n: next(scripted),
    )
    assert (await mappings.for_conference(ROOM_A)).pin == "1111111111"
    clock.advance(days=31)
    # ROOM_A's mapping expired: a new PIN, and the old one is never answered again.
    assert (await mappings.for_conference(ROOM_A)).pin == "2222222222"
    assert await mappings.for_pin("1111111111") is None
    # Another room is not handed the quarantined PIN: the generator offered it, it was skipped.
    assert (await mappings.for_conference(ROOM_B)).pin == "3333333333"
    # After the quarantine (30 days from expiry at day 30) the PIN may be reissued.
    clock.advance(days=30)
    room_c = "charlie@conference.meet.example.com"
    assert (await mappings.for_conference(room_c)).pin == "1111111111"
    assert (await mappings.for_pin("1111111111")).conference == room_c


async def test_sweep_retires_expired_and_frees_after_quarantine(db, clock) -> None:
    mappings = repo(db, clock)
    pin = (await mappings.for_conference(ROOM_A)).pin
    clock.advance(days=31)
    assert await mappings.sweep() == (1, 0)
    assert await mappings.for_pin(pin) is None
    clock.advance(days=29)
    assert await mappings.sweep() == (0, 1)


async def test_pin_collision_is_retried(db, clock) -> None:
    pins = itertools.chain(["5555555555", "5555555555", "6666666666"])
    mappings = ConferenceMappings(
        db, MappingPolicy(refresh_interval_seconds=0), clock=clock, pin_source=lambda _n: next(pins)
    )
    assert (await mappings.for_conference(ROOM_A)).pin == "5555555555"
    assert (await mappings.for_conference(ROOM_B)).pin == "6666666666"


async def test_static_pin_never_expires_and_replaces_the_dynamic_one(db, clock) -> None:
    mappings = repo(db, clock)
    dynamic = (await mappings.for_conference(ROOM_A)).pin
    static = await mappings.set_static(ROOM_A, "424242")
    assert static.static and static.expires_at is None
    assert (await mappings.for_conference(ROOM_A)).pin == "424242"
    assert await mappings.for_pin(dynamic) is None
    clock.advance(days=400)
    assert (await mappings.for_pin("424242")).conference == ROOM_A


async def test_static_pin_refuses_a_taken_or_quarantined_pin(db, clock) -> None:
    mappings = repo(db, clock)
    taken = (await mappings.for_conference(ROOM_A)).pin
    with pytest.raises(PinUnavailable):
        await mappings.set_static(ROOM_B, taken)
    await mappings.delete(taken)
    with pytest.raises(PinUnavailable):  # deleted → quarantined
        await mappings.set_static(ROOM_B, taken)
    moved = await mappings.set_static(ROOM_B, taken, replace=True)
    assert moved.conference == ROOM_B
    with pytest.raises(ValueError):
        await mappings.set_static(ROOM_B, "0123456")


async def test_delete_puts_pin_in_quarantine(db, clock) -> None:
    mappings = repo(db, clock)
    pin = (await mappings.for_conference(ROOM_A)).pin
    assert await mappings.delete(pin)
    assert await mappings.for_pin(pin) is None
    assert not await mappings.delete(pin)
    assert (await mappings.for_conference(ROOM_A)).pin != pin


async def test_list_and_search(db, clock) -> None:
    mappings = repo(db, clock)
    a = await mappings.for_conference(ROOM_A)
    await mappings.for_conference(ROOM_B)
    assert {m.conference for m in await mappings.list()} == {ROOM_A, ROOM_B}
    assert [m.pin for m in await mappings.list(search="alpha")] == [a.pin]
    assert await mappings.count_live() == 2


async def test_concurrent_creation_in_one_process_yields_one_pin_per_room(db, clock) -> None:
    mappings = repo(db, clock)
    rooms = [f"room{i}@conference.meet.example.com" for i in range(20)]
    results = await asyncio.gather(*(mappings.for_conference(r) for r in rooms * 5))
    by_room: dict[str, set[str]] = {}
    for m in results:
        by_room.setdefault(m.conference, set()).add(m.pin)
    assert all(len(pins) == 1 for pins in by_room.values())
    assert await mappings.count_live() == 20
