"""Dial-in end to end: phone → dialbridge → registered Jigasi stand-in, on loopback."""

from __future__ import annotations

import asyncio
import contextlib

from dialbridge.calls.standins import wait_for
from dialbridge.sip.ua import CallStateError

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
    # The phone hears its own 1 kHz tone echoed by the meeting: audio went both ways.
    assert await wait_for(lambda: call.rtp.tone_frames > 25, 5)
    # A dial-in is a use of the mapping: refreshed regardless of the refresh interval.
    mapping = await rig.services.mappings.show(pin)
    assert mapping.last_used_at > mapping.created_at
    await call.hangup()
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.room == f"weekly@{MUC}" and cdr.pin == pin
    assert cdr.caller == "+49 \u2022\u2022\u2022 \u2022\u2022\u2022\u2022 12"
    assert cdr.hangup_side == "caller" and cdr.bridged_at is not None


async def test_wrong_pin_then_right_pin_gets_in(make_rig) -> None:
    rig = await make_rig()
    pin = await rig.pin_for("weekly")
    wrong = "1" + pin[1:] if pin[0] != "1" else "2" + pin[1:]
    call = await rig.phone.dial(DID, caller="+4930111111111")
    await call.answered()
    await asyncio.sleep(0.3)
    await call.keys(f"{wrong}#", method="info")
    await asyncio.sleep(0.3)
    await call.keys("#", method="info")  # no password
    # Not revealed before the password step: the failure is said after it.
    assert await wait_for(lambda: "could_not_join" in rig.prompts.asked, 5)
    assert "unknown_pin" not in rig.prompts.asked
    assert not rig.jigasi.invites
    await asyncio.sleep(0.3)
    await call.keys(f"{pin}#", method="info")
    await asyncio.sleep(0.3)
    await call.keys("#", method="info")
    assert await wait_for(lambda: rig.jigasi.invites, 5)
    assert rig.jigasi.invites[0].headers["Jitsi-Conference-Room"] == f"weekly@{MUC}"
    assert "Jitsi-Conference-Room-Pass" not in rig.jigasi.invites[0].headers
    assert await wait_for(lambda: rig.engine.calls and
                          next(iter(rig.engine.calls.values())).bridged_at, 5)  # fmt: skip
    await call.hangup()


async def test_unknown_pin_is_said_at_once_when_configured_to_reveal(make_rig) -> None:
    rig = await make_rig(ivr={"reveal_unknown_pin": True})
    call = await rig.phone.dial(DID, caller="+4930111111112")
    await call.answered()
    await asyncio.sleep(0.3)
    await call.keys("999999#", method="info")
    assert await wait_for(lambda: "unknown_pin" in rig.prompts.asked, 5)
    assert "enter_password" not in rig.prompts.asked
    await call.hangup()


async def test_no_input_says_goodbye_and_hangs_up(make_rig) -> None:
    rig = await make_rig(ivr={"pin_timeout": 0.5, "max_no_input": 2})
    call = await rig.phone.dial(DID, caller="+4930111111113")
    await call.answered()
    reason = await call.ended(10)
    assert reason == "remote bye"
    assert rig.prompts.asked.count("enter_pin") == 2
    assert rig.prompts.asked[-1] == "no_input"
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.hangup_cause == "no input" and cdr.hangup_side == "dialbridge"


async def test_jigasi_486_explains_and_goes_back_to_the_pin_prompt(make_rig) -> None:
    rig = await make_rig()
    rig.jigasi.behaviour.reject_with = 486
    rig.jigasi.behaviour.reject_first = 1
    pin = await rig.pin_for("locked")
    call = await rig.phone.dial(DID, caller="+4930111111114")
    await call.answered()
    for attempt in range(2):
        prompts_before = rig.prompts.asked.count("enter_pin")
        await asyncio.sleep(0.3)
        await call.keys(f"{pin}#", method="info")
        await asyncio.sleep(0.3)
        await call.keys("1234#", method="info")
        if attempt == 0:
            assert await wait_for(lambda: "could_not_join" in rig.prompts.asked, 5)
            assert await wait_for(
                lambda n=prompts_before: rig.prompts.asked.count("enter_pin") > n, 5
            )
    assert await wait_for(lambda: len(rig.jigasi.invites) == 2, 5)
    assert await wait_for(lambda: rig.jigasi.dialogs, 5)
    call_obj = next(iter(rig.engine.calls.values()))
    assert await wait_for(lambda: call_obj.bridged_at is not None, 5)
    await call.hangup()


async def test_too_many_attempts_in_one_call_ends_it(make_rig) -> None:
    rig = await make_rig(ivr={"max_pin_attempts": 2})
    call = await rig.phone.dial(DID, caller="+4930111111115")
    await call.answered()
    for _ in range(2):
        await asyncio.sleep(0.3)
        await call.keys("55555#", method="info")
        await asyncio.sleep(0.3)
        await call.keys("#", method="info")
    assert await call.ended(10) == "remote bye"
    assert rig.prompts.asked[-1] == "goodbye"


async def test_jigasi_hanging_up_ends_the_phone_call(make_rig) -> None:
    rig = await make_rig()
    pin = await rig.pin_for("weekly")
    call = await rig.phone.dial(DID, caller="+4930111111116")
    await call.answered()
    await asyncio.sleep(0.3)
    await call.keys(f"{pin}##", method="info")
    assert await wait_for(lambda: rig.jigasi.dialogs, 5)
    await asyncio.sleep(0.3)
    await rig.jigasi.bye_all()  # kicked from the meeting (jigasi-protocol.md §6.2)
    assert await call.ended(5) == "remote bye"
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.hangup_side == "jigasi"


async def test_pin_guessing_locks_out_that_caller_but_not_another(make_rig) -> None:
    rig = await make_rig(
        ivr={"max_pin_attempts": 5},
        limits={"pin_guard": {"delay_after": 5, "delay_seconds": 0.05, "refuse_after": 20}},
    )
    guesser = "+4930666666666"
    failures = rig.engine.metrics
    calls = 0
    while failures["pin_failures"] < 20 and calls < 8:
        calls += 1
        call = await rig.phone.dial(DID, caller=guesser)
        await call.answered(5)
        guess = 0
        while not call.dialog.is_terminated and failures["pin_failures"] < 20:
            await asyncio.sleep(0.25)
            guess += 1
            with contextlib.suppress(CallStateError):
                await call.keys(f"{1000000 + guess}##", method="info")
            await wait_for(lambda c=call: c.dialog.is_terminated, 0.3)
        await call.hangup()
    assert failures["pin_failures"] == 20 and calls >= 4  # over several calls
    refused = await rig.phone.dial(DID, caller=guesser)
    final = await asyncio.wait_for(refused.outgoing.final, 5)
    assert final.status == 403
    pin = await rig.pin_for("weekly")
    other = await rig.phone.dial(DID, caller="+4930777777777")
    await other.answered()
    await asyncio.sleep(0.3)
    await other.keys(f"{pin}##", method="info")
    assert await wait_for(lambda: rig.jigasi.dialogs, 5)
    await other.hangup()


async def test_a_locked_out_caller_is_refused_403_with_a_reason_before_answer(make_rig) -> None:
    rig = await make_rig(limits={"pin_guard": {"refuse_after": 1}})
    await rig.engine.pin_guard.record_failure("+4930666666666")
    refused = await rig.phone.dial(DID, caller="+4930666666666")
    final = await asyncio.wait_for(asyncio.shield(refused.outgoing.final), 5)
    assert final.status == 403
    assert "too many failed PINs" in (final.headers.get("Reason") or "")
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.sip_status == 403 and cdr.answered_at is None


async def test_pin_looked_up_in_a_remote_mapper_with_cid(make_rig, tmp_path) -> None:
    """ivr.mapper_url: the PIN goes to a conference mapper over HTTP (here our own web app,
    served by uvicorn on loopback), as the reference scenario does (§2.4)."""
    import socket

    import uvicorn

    from dialbridge.web import create_http_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/conferenceMapper"
    rig = await make_rig(ivr={"mapper_url": url, "mapper_param": "cid"})
    server = uvicorn.Server(uvicorn.Config(create_http_app(rig.services), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))  # fmt: skip
    serving = asyncio.ensure_future(server.serve())
    try:
        assert await wait_for(lambda: server.started, 5)
        pin = await rig.pin_for("remote")
        call = await rig.phone.dial(DID, caller="+4930111111117")
        await call.answered()
        await asyncio.sleep(0.3)
        await call.keys(f"{pin}##", method="info")
        assert await wait_for(lambda: rig.jigasi.invites, 5)
        assert rig.jigasi.invites[0].headers["Jitsi-Conference-Room"] == f"remote@{MUC}"
        await call.hangup()
    finally:
        server.should_exit = True
        await serving


async def test_jigasi_not_answering_in_time_is_cancelled_and_explained(make_rig) -> None:
    rig = await make_rig(jigasi={"answer_timeout": 1.0})
    rig.jigasi.behaviour.answer_after = 5
    pin = await rig.pin_for("slow")
    call = await rig.phone.dial(DID, caller="+4930111111118")
    await call.answered()
    await asyncio.sleep(0.3)
    await call.keys(f"{pin}##", method="info")
    assert await wait_for(lambda: rig.jigasi.invites, 5)
    assert await wait_for(lambda: "could_not_join" in rig.prompts.asked, 5)
    # The INVITE was cancelled: the stand-in never answers it.
    await asyncio.sleep(0.2)
    assert not rig.jigasi.dialogs
    await call.hangup()


async def test_a_reinvite_from_the_phone_moves_our_media_to_its_new_port(make_rig) -> None:
    from dialbridge.calls.standins import RtpPort
    from dialbridge.sip import sdp as sdplib

    rig = await make_rig()
    call = await rig.phone.dial(DID, caller="+4930111111119")
    await call.answered()
    call.rtp.stop_sending()  # else symmetric RTP would latch back to the old source port
    moved = RtpPort("127.0.0.2")
    port = await moved.open()
    offer = sdplib.create_offer(sdplib.LocalMedia(address="127.0.0.2", port=port,
                                                  codecs=(sdplib.PCMA,)))  # fmt: skip
    response = await call.dialog.reinvite(offer.to_bytes())
    assert response.status == 200
    # Nothing is sent from the new port, so only the SDP can have moved our stream there.
    assert await wait_for(lambda: moved.received > 10, 3)
    moved.close()
    await call.hangup()
