"""CDR queries shared by ``dialbridge cdr`` and the admin API.

The store's :class:`~dialbridge.store.cdr.CallRecords` filters by direction and start time in
SQL; room, cause and answered/failed are narrowed here over a bounded window of recent rows,
which is what an operator looking at "recent calls" needs.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict
from typing import Any

SCAN_LIMIT = 5000  # rows read at most to apply the filters done here


def parse_since(value: str | None, *, now: float | None = None) -> float | None:
    """``90m``, ``2h``, ``7d``, ``30s`` ago, or a Unix time, or ISO ``2026-11-26T08:00:00``."""
    if not value:
        return None
    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r}: use 90m, 2h, 7d, a Unix time or an ISO date") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


async def find_cdrs(
    records: Any,
    *,
    direction: str | None = None,
    since: float | None = None,
    room: str | None = None,
    cause: str | None = None,
    outcome: str | None = None,  # "bridged" or "failed"
    limit: int = 100,
) -> list[Any]:
    rows = await records.list(direction=direction, since=since, limit=SCAN_LIMIT)
    out = []
    for row in rows:
        if room and room.lower() not in (row.room or "").lower():
            continue
        if cause and cause.lower() not in (row.hangup_cause or "").lower():
            continue
        if outcome == "bridged" and row.bridged_at is None:
            continue
        if outcome == "failed" and row.bridged_at is not None:
            continue
        out.append(row)
        if len(out) >= limit:
            break
    return out


def cdr_dict(row: Any) -> dict[str, Any]:
    d = asdict(row)
    d["quality"] = quality(row)
    return d


def quality(row: Any) -> str:
    """A word for the admin page from RTCP loss and jitter (ITU-T G.1020-ish thresholds)."""
    loss, jitter = row.loss_fraction, row.jitter_ms
    if loss is None and jitter is None:
        return "unknown"
    loss, jitter = loss or 0.0, jitter or 0.0
    if loss < 0.01 and jitter < 30:
        return "good"
    if loss < 0.05 and jitter < 60:
        return "fair"
    return "poor"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) if ts else "-"


def render_table(rows: list[Any]) -> str:
    lines = [
        f"{'started (UTC)':<19}  {'dir':<3}  {'duration':>8}  {'cause':<24}  {'side':<10}  "
        f"{'quality':<7}  room / destination"
    ]
    for r in rows:
        target = r.room or r.destination or "-"
        lines.append(
            f"{_when(r.started_at):<19}  {r.direction:<3}  {r.duration:>7.1f}s  "
            f"{(r.hangup_cause or '-')[:24]:<24}  {(r.hangup_side or '-'):<10}  "
            f"{quality(r):<7}  {target}"
        )
    return "\n".join(lines)
