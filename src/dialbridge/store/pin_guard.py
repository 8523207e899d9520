"""PIN guessing protection: failed attempts counted over sliding windows, in the store.

Rules (issue 5 §8):
* Every failed PIN attempt (unknown PIN, or a join that failed after the password step) is
  one row: who (a hash of the caller number, so the table is no list of callers) and when.
* Per caller, counted over ``window``: past ``delay_after`` failures every further attempt waits
  ``delay_seconds`` more (capped); at ``refuse_after`` the caller is refused until old failures
  leave the window. The same again for all callers together, with their own thresholds, so a
  guess spread over many numbers is slowed too.
* The counts live in the store, so every dialbridge process sharing it sees the same numbers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from dialbridge.store.db import Database
from dialbridge.store.models import PinFailure

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class PinGuardPolicy:
    window_seconds: float = 3600
    delay_after: int = 3
    refuse_after: int = 10
    delay_seconds: float = 2
    max_delay_seconds: float = 10
    global_window_seconds: float = 600
    global_delay_after: int = 50
    global_refuse_after: int = 500


@dataclass(frozen=True, slots=True)
class PinVerdict:
    refused: bool
    delay: float  # seconds to wait before taking the next PIN
    caller_failures: int
    global_failures: int
    reason: str = ""


def caller_key(number: str | None) -> str:
    number = (number or "").strip() or ANONYMOUS
    return hashlib.sha256(b"dialbridge-pin-guard\0" + number.encode()).hexdigest()[:32]


class PinGuard:
    def __init__(
        self, db: Database, policy: PinGuardPolicy, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock

    async def verdict(self, caller: str | None) -> PinVerdict:
        p = self.policy
        now = self.clock()
        key = caller_key(caller)
        async with self.db.read() as session:
            mine = await session.scalar(
                select(func.count())
                .select_from(PinFailure)
                .where(PinFailure.caller == key, PinFailure.at > now - p.window_seconds)
            )
            everyone = await session.scalar(
                select(func.count())
                .select_from(PinFailure)
                .where(PinFailure.at > now - p.global_window_seconds)
            )
        mine, everyone = int(mine or 0), int(everyone or 0)
        if mine >= p.refuse_after:
            return PinVerdict(True, 0.0, mine, everyone, "too many failed PINs from this caller")
        if everyone >= p.global_refuse_after:
            return PinVerdict(True, 0.0, mine, everyone, "too many failed PINs overall")
        over = max(mine - p.delay_after, everyone - p.global_delay_after, -1) + 1
        delay = min(p.max_delay_seconds, over * p.delay_seconds) if over > 0 else 0.0
        return PinVerdict(False, delay, mine, everyone)

    async def record_failure(self, caller: str | None) -> None:
        async with self.db.write() as session:
            session.add(PinFailure(caller=caller_key(caller), at=self.clock()))

    async def sweep(self) -> int:
        """Forget failures older than both windows."""
        horizon = self.clock() - max(self.policy.window_seconds, self.policy.global_window_seconds)
        async with self.db.write() as session:
            result = await session.execute(delete(PinFailure).where(PinFailure.at <= horizon))
            return result.rowcount or 0
