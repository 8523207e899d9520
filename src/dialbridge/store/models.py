"""Tables. Times are UTC seconds since the epoch (float): portable across SQLite and
PostgreSQL, and trivially driven by a test clock."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, Index, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ConferenceMapping(Base):
    """A PIN and the room it admits to.

    A row lives on after it expires (``retired_at`` set) so its PIN stays reserved for the
    quarantine period; the primary key on ``pin`` makes a PIN unique among live and
    quarantined rows alike, and the partial unique index gives a room at most one live PIN
    even when several processes create mappings at once.
    """

    __tablename__ = "conference_mappings"

    pin: Mapped[str] = mapped_column(String(13), primary_key=True)
    conference: Mapped[str] = mapped_column(String(2048))
    static: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)
    last_used_at: Mapped[float] = mapped_column(Float)
    retired_at: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)

    __table_args__ = (
        Index(
            "uq_conference_mappings_live_conference",
            "conference",
            unique=True,
            sqlite_where=retired_at.is_(None),
            postgresql_where=retired_at.is_(None),
        ),
        Index("ix_conference_mappings_retired_at", "retired_at"),
    )


class CallRecord(Base):
    """One row per call (a CDR), written when the call ends.

    ``caller`` is stored masked: the CDR is for quality and billing checks, not a list of who
    called. ``pin`` is the PIN that let the caller in (or the last one tried).
    """

    __tablename__ = "call_records"

    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    direction: Mapped[str] = mapped_column(String(8))  # "in" (dial-in) / "out" (dial-out)
    scenario: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[float] = mapped_column(Float)
    answered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    bridged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)  # seconds bridged (0 if never)
    did: Mapped[str | None] = mapped_column(String(64), nullable=True)  # number dialled in
    destination: Mapped[str | None] = mapped_column(String(64), nullable=True)  # dial-out
    caller: Mapped[str | None] = mapped_column(String(128), nullable=True)  # masked
    room: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    pin: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sip_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hangup_cause: Mapped[str] = mapped_column(String(128))
    hangup_side: Mapped[str] = mapped_column(String(16))  # caller, jigasi, trunk, dialbridge
    loss_fraction: Mapped[float | None] = mapped_column(Float, nullable=True)
    jitter_ms: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_call_records_started_at", "started_at"),)


class PinFailure(Base):
    """One failed PIN attempt; counted over sliding windows by every process sharing the store."""

    __tablename__ = "pin_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    caller: Mapped[str] = mapped_column(String(128))  # a keyed hash of the caller number
    at: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_pin_failures_caller_at", "caller", "at"),
        Index("ix_pin_failures_at", "at"),
    )
