"""Jigasi's SIP health check (jigasi-protocol.md §2.3): answer at once and send audio.

The check passes when Jigasi receives RTP from us within 10 s; it then hangs up. Our media
session sends a packet every 20 ms from the moment the remote description is known, and we add
a short tone so there is sound, not only comfort silence.
"""

from __future__ import annotations

import asyncio

from dialbridge.calls.call import Call

MAX_SECONDS = 30


async def jigasi_health(call: Call) -> None:
    await call.answer()
    await call.play(call.caller, tone="beep")
    try:
        await asyncio.wait_for(call.wait_ended(), MAX_SECONDS)
    except TimeoutError:
        await call.hangup("health check done", side="dialbridge")
