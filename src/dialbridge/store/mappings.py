"""Conference mappings: room JID ↔ PIN, with expiry, refresh on use and PIN quarantine.

Rules (issue 2, meet-services.md §4–§7):
* A PIN is ``pin_length`` digits from a CSPRNG with no leading zero; it says nothing about the
  room. Uniqueness is the database's job (primary key), and a collision is retried.
* A mapping expires ``expire_days`` after its last use. A lookup in either direction, or a
  dial-in, is a use. Refreshing is a write, so it happens at most once per
  ``refresh_interval_seconds`` per mapping.
* An expired mapping is retired, not deleted: its PIN is never answered again and not reissued
  before ``quarantine_days`` have passed, so an old invitation never reaches a new meeting.
* Static PINs (set by an admin) never expire.

Every method takes its time from ``clock`` (seconds since the epoch), so tests move time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dialbridge.store.db import Database
from dialbridge.store.models import ConferenceMapping

DAY = 86_400.0
MAX_PIN_ATTEMPTS = 50
STATIC_PIN_DIGITS = (4, 13)


class PinUnavailable(Exception):
    """A static PIN was asked for that another room holds or that is in quarantine."""


@dataclass(frozen=True, slots=True)
class Mapping:
    pin: str
    conference: str
    static: bool
    created_at: float
    last_used_at: float
    expires_at: float | None  # None: never (static)

    @property
    def id(self) -> int:
        return int(self.pin)


@dataclass(frozen=True, slots=True)
class MappingPolicy:
    pin_length: int = 10
    expire_days: float = 30
    quarantine_days: float = 30
    refresh_interval_seconds: float = 300


def generate_pin(length: int) -> str:
    """``length`` digits, uniform, first digit 1–9 (an integer id must not lose a zero)."""
    low = 10 ** (length - 1)
    return str(low + secrets.randbelow(9 * low))


class ConferenceMappings:
    def __init__(
        self,
        db: Database,
        policy: MappingPolicy,
        *,
        clock: Callable[[], float] = time.time,
        pin_source: Callable[[int], str] = generate_pin,
    ) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock
        self.pin_source = pin_source

    # -- policy ------------------------------------------------------------------------

    @property
    def _ttl(self) -> float:
        return self.policy.expire_days * DAY

    def _expires_at(self, row: ConferenceMapping) -> float | None:
        return None if row.static else row.last_used_at + self._ttl

    def _is_expired(self, row: ConferenceMapping, now: float) -> bool:
        expires = self._expires_at(row)
        return expires is not None and expires <= now

    def _needs_refresh(self, row: ConferenceMapping, now: float) -> bool:
        return not row.static and now - row.last_used_at >= self.policy.refresh_interval_seconds

    def _view(self, row: ConferenceMapping) -> Mapping:
        return Mapping(
            pin=row.pin,
            conference=row.conference,
            static=row.static,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=self._expires_at(row),
        )

    # -- lookups (a lookup is a use) ---------------------------------------------------

    async def for_conference(self, conference: str) -> Mapping:
        """The live mapping of a canonical JID, created on first sight."""
        now = self.clock()
        async with self.db.read() as session:
            row = await self._live_by_conference(session, conference)
            if (
                row is not None
                and not self._is_expired(row, now)
                and not self._needs_refresh(row, now)
            ):
                return self._view(row)
        async with self.db.write() as session:
            return await self._get_or_create(session, conference, now)

    async def for_pin(self, pin: str) -> Mapping | None:
        """The live mapping a PIN admits to, or None (unknown, expired or quarantined)."""
        if not pin.isdigit():
            return None
        now = self.clock()
        async with self.db.read() as session:
            row = await self._live_by_pin(session, pin)
            if row is None:
                return None
            if not self._is_expired(row, now) and not self._needs_refresh(row, now):
                return self._view(row)
        async with self.db.write() as session:
            row = await self._live_by_pin(session, pin)
            if row is None:
                return None
            if self._is_expired(row, now):
                self._retire(row)
                return None
            row.last_used_at = now
            return self._view(row)

    async def touch(self, pin: str) -> bool:
        """Record a use (a dial-in) regardless of the refresh interval."""
        now = self.clock()
        async with self.db.write() as session:
            row = await self._live_by_pin(session, pin)
            if row is None or self._is_expired(row, now):
                if row is not None:
                    self._retire(row)
                return False
            row.last_used_at = now
            return True

    # -- admin -------------------------------------------------------------------------

    async def set_static(self, conference: str, pin: str, *, replace: bool = False) -> Mapping:
        """Bind ``conference`` to ``pin`` for good. Its previous PIN (if any) is retired."""
        low, high = STATIC_PIN_DIGITS
        if not (pin.isdigit() and low <= len(pin) <= high and pin[0] != "0"):
            raise ValueError(f"a static PIN is {low}–{high} digits without a leading zero")
        now = self.clock()
        async with self.db.write() as session:
            holder = await session.get(ConferenceMapping, pin)
            if holder is not None and holder.conference != conference:
                if holder.retired_at is None and not replace:
                    raise PinUnavailable(f"PIN {pin} belongs to {holder.conference}")
                if holder.retired_at is not None and not replace:
                    raise PinUnavailable(
                        f"PIN {pin} is in quarantine until {self._quarantine_end(holder):.0f}"
                    )
                await session.delete(holder)
                await session.flush()
                holder = None
            current = await self._live_by_conference(session, conference)
            if current is not None and current is not holder:
                self._retire(current)
                await session.flush()
            if holder is not None:  # same room: make it static and live again
                holder.static, holder.retired_at, holder.last_used_at = True, None, now
                return self._view(holder)
            row = ConferenceMapping(
                pin=pin, conference=conference, static=True, created_at=now, last_used_at=now
            )
            session.add(row)
            await session.flush()
            return self._view(row)

    async def delete(self, pin: str) -> bool:
        """Forget a mapping. Its PIN goes into quarantine like an expired one."""
        now = self.clock()
        async with self.db.write() as session:
            row = await self._live_by_pin(session, pin)
            if row is None:
                return False
            row.retired_at = now
            row.static = False
            return True

    async def show(self, key: str) -> Mapping | None:
        """A live mapping by PIN or canonical JID, without counting as a use."""
        now = self.clock()
        async with self.db.read() as session:
            row = await (
                self._live_by_pin(session, key)
                if key.isdigit()
                else self._live_by_conference(session, key)
            )
            if row is None or self._is_expired(row, now):
                return None
            return self._view(row)

    async def list(self, *, search: str | None = None, limit: int = 100) -> list[Mapping]:
        now = self.clock()
        query = select(ConferenceMapping).where(ConferenceMapping.retired_at.is_(None))
        if search:
            query = query.where(
                or_(
                    ConferenceMapping.conference.contains(search.lower()),
                    ConferenceMapping.pin.startswith(search),
                )
            )
        query = query.order_by(ConferenceMapping.last_used_at.desc()).limit(limit)
        async with self.db.read() as session:
            rows = (await session.scalars(query)).all()
        return [self._view(r) for r in rows if not self._is_expired(r, now)]

    async def count_live(self) -> int:
        async with self.db.read() as session:
            return await session.scalar(
                select(func.count())
                .select_from(ConferenceMapping)
                .where(ConferenceMapping.retired_at.is_(None))
            )

    async def sweep(self) -> tuple[int, int]:
        """Retire expired mappings and free PINs whose quarantine ended. Returns (retired, freed)."""
        now = self.clock()
        async with self.db.write() as session:
            expired_cutoff = now - self._ttl
            rows = (
                await session.scalars(
                    select(ConferenceMapping).where(
                        ConferenceMapping.retired_at.is_(None),
                        ConferenceMapping.static.is_(False),
                        ConferenceMapping.last_used_at <= expired_cutoff,
                    )
                )
            ).all()
            for row in rows:
                self._retire(row)
            freed = await session.execute(
                delete(ConferenceMapping).where(
                    ConferenceMapping.retired_at.is_not(None),
                    ConferenceMapping.retired_at <= now - self.policy.quarantine_days * DAY,
                )
            )
            return len(rows), freed.rowcount or 0

    # -- internals ---------------------------------------------------------------------

    def _retire(self, row: ConferenceMapping) -> None:
        # Quarantine counts from the moment the mapping stopped being valid.
        row.retired_at = self._expires_at(row) if not row.static else self.clock()

    def _quarantine_end(self, row: ConferenceMapping) -> float:
        return (row.retired_at or 0.0) + self.policy.quarantine_days * DAY

    async def _live_by_conference(
        self, session: AsyncSession, conference: str
    ) -> ConferenceMapping | None:
        return await session.scalar(
            select(ConferenceMapping).where(
                ConferenceMapping.conference == conference, ConferenceMapping.retired_at.is_(None)
            )
        )

    async def _live_by_pin(self, session: AsyncSession, pin: str) -> ConferenceMapping | None:
        row = await session.get(ConferenceMapping, pin)
        return row if row is not None and row.retired_at is None else None

    async def _get_or_create(self, session: AsyncSession, conference: str, now: float) -> Mapping:
        row = await self._live_by_conference(session, conference)
        if row is not None and self._is_expired(row, now):
            self._retire(row)
            await session.flush()
            row = None
        if row is not None:
            if self._needs_refresh(row, now):
                row.last_used_at = now
            return self._view(row)
        for _ in range(MAX_PIN_ATTEMPTS):
            pin = self.pin_source(self.policy.pin_length)
            if not await self._pin_is_free(session, pin, now):
                continue
            row = ConferenceMapping(
                pin=pin, conference=conference, static=False, created_at=now, last_used_at=now
            )
            try:
                async with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                # Another process won: either it took this PIN (try another) or it created
                # this room's mapping first (use theirs).
                existing = await self._live_by_conference(session, conference)
                if existing is not None:
                    return self._view(existing)
                continue
            return self._view(row)
        raise RuntimeError(
            f"no free {self.policy.pin_length}-digit PIN after {MAX_PIN_ATTEMPTS} attempts; "
            "raise mapper.pin_length"
        )

    async def _pin_is_free(self, session: AsyncSession, pin: str, now: float) -> bool:
        """Unused, or retired with its quarantine over (then the old row goes)."""
        holder = await session.get(ConferenceMapping, pin)
        if holder is None:
            return True
        if holder.retired_at is None or self._quarantine_end(holder) > now:
            return False
        await session.delete(holder)
        await session.flush()
        return True
