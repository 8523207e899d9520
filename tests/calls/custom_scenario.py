"""A custom scenario, loaded by name from [[routes]]: an allow-listed line goes straight in."""

from dialbridge.calls.call import Call
from dialbridge.calls.scenario import run_in_call

ROOM = "board@conference.meet.example.com"


async def board_line(call: Call) -> None:
    await call.answer()
    await call.say("connecting")
    jigasi = await call.dial_jigasi(ROOM)
    await call.bridge(jigasi)
    await run_in_call(call, jigasi, call.caller)


def not_async(call: Call) -> None:  # for the loader's refusal
    return None
