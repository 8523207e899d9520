"""Call detail records: one row per call, written once when the call ends."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from sqlalchemy import select

from dialbridge.store.db import Database
from dialbridge.store.models import CallRecord


@dataclass(frozen=True, slots=True)
class Cdr:
    call_id: str
    direction: str  # "in" / "out"
    scenario: str
    started_at: float
    ended_at: float
    hangup_cause: str
    hangup_side: str  # caller, jigasi, trunk, dialbridge
    answered_at: float | None = None
    bridged_at: float | None = None
    duration: float = 0.0
    did: str | None = None
    destination: str | None = None
    caller: str | None = None  # masked
    room: str | None = None
    pin: str | None = None
    sip_status: int | None = None
    loss_fraction: float | None = None
    jitter_ms: float | None = None


_COLUMNS = [f.name for f in fields(Cdr)]


class CallRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, cdr: Cdr) -> None:
        async with self.db.write() as session:
            session.add(CallRecord(**asdict(cdr)))

    async def get(self, call_id: str) -> Cdr | None:
        async with self.db.read() as session:
            row = await session.get(CallRecord, call_id)
            return None if row is None else _view(row)

    async def list(
        self, *, direction: str | None = None, since: float | None = None, limit: int = 100
    ) -> list[Cdr]:
        """Most recent first."""
        query = select(CallRecord).order_by(CallRecord.started_at.desc()).limit(limit)
        if direction is not None:
            query = query.where(CallRecord.direction == direction)
        if since is not None:
            query = query.where(CallRecord.started_at >= since)
        async with self.db.read() as session:
            return [_view(row) for row in (await session.scalars(query)).all()]


def _view(row: CallRecord) -> Cdr:
    return Cdr(**{name: getattr(row, name) for name in _COLUMNS})
