"""Dial-out: a Meet moderator calls a phone number through Jigasi (issue 5 §5, reference §3).

Only the registered, authenticated Jigasi may dial out. The number is the Request-URI user;
the same dial-out policy as ``/authorizephone`` decides, and a refusal is a 403 with a Reason
header (and a CDR row), with no trunk call. Caller ID: our DID in the destination's country,
else the default DID. Jigasi hears 180 while the trunk is dialled; the trunk's ringing and early
media are relayed; on answer Jigasi is answered and both are bridged. Busy, no answer or a
rejection end Jigasi's INVITE with the matching code, and a CANCEL or BYE from Jigasi ends the
trunk leg at once (the reference leaves it ringing).
"""

from __future__ import annotations

from dialbridge.calls.call import Call, DialFailed
from dialbridge.calls.scenario import run_in_call

BUSY = {486, 600, 603}


async def dial_out(call: Call) -> None:
    if call.source_user != call.config.jigasi.user:
        await call.reject(403, reason="dial-out only from Jigasi")
        return
    decision = call.engine.dialout.check(call.request_user)
    call.destination = decision.phone
    if not decision.allow:
        call.log.info("dial-out to %s refused: %s", decision.phone, decision.reason)
        await call.reject(403, reason=decision.reason)
        return

    caller_id = call.engine.caller_id_for(decision.country)
    await call.ring()
    try:
        phone = await call.dial_trunk(decision.phone, caller_id=caller_id)
    except DialFailed as failure:
        await call.reject(jigasi_status(failure.status), reason=failure.reason or None)
        return

    await call.answer()
    await call.bridge(phone)
    await run_in_call(call, call.caller, phone)


def jigasi_status(status: int) -> int:
    """The code Jigasi gets for a failed trunk call: busy stays busy (Meet shows "Busy"),
    our own ring timeout is 408, trunk authentication trouble is our problem (503)."""
    if status in BUSY:
        return 486
    if status in (401, 407):
        return 503
    if 300 <= status <= 699:
        return status
    return 500
