"""Dial-in end to end: phone → dialbridge → registered Jigasi stand-in, on loopback."""

from __future__ import annotations

import asyncio

from dialbridge.calls.standins import wait_for

from .conftest import MUC

DID = "+493012345670"


async def test_dial_in_reaches_jigasi_with_room_and_password_headers(make_rig) -> None:
    rig = await make_rig()
    pin = await rig.pin_for("weekly")
    call = await rig.phone.dial(DID, caller="+4930123456712", name="JOHN")
    await call.answered()
    await asyncio.sleep(0.3)
    await call.keys(f"{pin}#")
    await asyncio.sleep(0.3)
    await call.keys("4711#")
    assert await wait_for(lambda: rig.jigasi.invites, 10)
    invite = rig.jigasi.invites[0]
    assert invite.headers["Jitsi-Conference-Room"] == f"weekly@{MUC}"
    assert invite.headers["Jitsi-Conference-Room-Pass"] == "4711"
    assert '"+49 \u2022\u2022\u2022 \u2022\u2022\u2022\u2022 12"' in invite.from_header
    assert "+4930123456712" not in invite.from_header
    # Jigasi only accepts requests from the registrar's address (jigasi-protocol.md §1.1).
    assert invite.source == rig.engine.ua.local_addresses["udp"]
    assert await wait_for(lambda: rig.jigasi.audio_packets_received > 50, 5)
    assert await wait_for(lambda: call.rtp.heard_sound() > 25, 5)
    await call.hangup()
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.room == f"weekly@{MUC}" and cdr.pin == pin
    assert cdr.caller == "+49 \u2022\u2022\u2022 \u2022\u2022\u2022\u2022 12"
    assert cdr.hangup_side == "caller" and cdr.bridged_at is not None
