"""Tables. Times are UTC seconds since the epoch (float): portable across SQLite and
PostgreSQL, and trivially driven by a test clock."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, Index, MetaData, String
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
