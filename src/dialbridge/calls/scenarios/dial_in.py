"""Dial-in: a phone caller joins a Jitsi meeting with its PIN (issue 5 §4, reference §2).

Answer. Ask for the PIN; the caller ends it with #. Look it up. Ask for the password (# alone
for none). Say "connecting" and call Jigasi with the room; the caller hears ringback while
Jigasi joins. When Jigasi answers, bridge the two and hand over to the in-call controls. If
Jigasi cannot join, say so and ask for the PIN again. A few PIN attempts per call; repeated
silence, or too many failures from this caller, and we say goodbye.

Fixed from the reference: the number of wrong PINs per call is bounded, the password prompt
does not loop for ever, a failed join is explained instead of a silent hang-up, the caller
hears ringback, and by default the IVR does not reveal whether a PIN exists before the
password step (``ivr.reveal_unknown_pin``).
"""

from __future__ import annotations

import asyncio

from dialbridge.calls.call import Call, DialFailed
from dialbridge.calls.scenario import run_in_call


async def dial_in(call: Call) -> None:
    ivr = call.config.ivr
    guard = await call.pin_guard()
    if guard.refused:
        call.log.info("caller refused: %s", guard.reason)
        await call.reject(403, reason=guard.reason)
        return

    await call.answer()
    attempts = 0
    while attempts < ivr.max_pin_attempts:
        pin = await ask(call, "enter_pin", max_digits=ivr.pin_max_digits, timeout=ivr.pin_timeout)
        if pin is None:
            await goodbye(call, "no_input", "no input")
            return
        attempts += 1
        call.pin = pin
        room = await call.lookup_pin(pin)
        if room is None and ivr.reveal_unknown_pin:
            if not await failed_attempt(call):
                return
            await call.say("unknown_pin")
            continue

        password = await ask(
            call, "enter_password", max_digits=ivr.password_max_digits,
            timeout=ivr.password_timeout,
        )  # fmt: skip
        if password is None:
            await goodbye(call, "no_input", "no input")
            return
        if room is None:
            if not await failed_attempt(call):
                return
            await call.say("could_not_join")
            continue

        await call.say("connecting")
        try:
            jigasi = await call.dial_jigasi(room, password=password or None)
        except DialFailed as failure:
            call.log.info("Jigasi could not join %s: %d", room, failure.status)
            if not await failed_attempt(call):
                return
            await call.say("could_not_join")
            continue

        await call.touch_pin(pin)
        await call.bridge(jigasi)
        await run_in_call(call, jigasi, call.caller)
        return

    await goodbye(call, "goodbye", "too many PIN attempts")


async def ask(call: Call, prompt: str, *, max_digits: int, timeout: float) -> str | None:
    """Prompt and collect to #; re-prompt on silence up to ``ivr.max_no_input`` times.
    None: the caller never typed anything."""
    for _ in range(call.config.ivr.max_no_input):
        await call.say(prompt, barge_in=True)
        entry = await call.collect(max_digits=max_digits, terminator="#", timeout=timeout)
        if entry is not None:
            return entry
    return None


async def failed_attempt(call: Call) -> bool:
    """Count a failed PIN attempt in the store; wait if the guard says so. False: refused."""
    await call.pin_failed()
    verdict = await call.pin_guard()
    if verdict.refused:
        call.log.info("caller refused: %s", verdict.reason)
        await goodbye(call, "try_later", verdict.reason)
        return False
    if verdict.delay:
        await asyncio.sleep(verdict.delay)
    return True


async def goodbye(call: Call, prompt: str, cause: str) -> None:
    await call.say(prompt)
    await call.hangup(cause, side="dialbridge")
