"""In-call controls end to end on loopback: a PSTN phone keys RFC 4733 digits through a trunk
into dialbridge, which is bridged to the registered Jigasi stand-in; Jigasi's INFO JSON flows
over the real dialog (rig: tests/calls/conftest.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from dialbridge.calls.standins import wait_for
from dialbridge.sip.ua import InfoReceived

DID = "+493012345670"
WAIT = 5.0


class JigasiSide:
    """The stand-in's dialog: what our side sent it, and a way to send it Jigasi's INFOs."""

    def __init__(self, dialog) -> None:  # noqa: ANN001
        self.dialog = dialog
        self.received: asyncio.Queue[dict] = asyncio.Queue()
        self.task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        async for event in self.dialog.events():
            if isinstance(event, InfoReceived):
                assert event.content_type == "application/json"
                self.received.put_nowait(json.loads(event.body))

    async def next(self) -> dict:
        return await asyncio.wait_for(self.received.get(), WAIT)

    async def send(self, obj: dict | str) -> int:
        body = obj if isinstance(obj, str) else json.dumps(obj)
        return (await asyncio.wait_for(self.dialog.info("application/json", body), WAIT)).status


async def join(make_rig, **overrides):  # noqa: ANN001, ANN003, ANN201
    """A phone in the meeting with the controls running: (rig, phone, jigasi side)."""
    rig = await make_rig(**overrides)
    pin = await rig.pin_for("weekly")
    phone = await rig.phone.dial(DID, caller="+4930222222222")
    await phone.answered()
    await asyncio.sleep(0.3)
    await phone.keys(f"{pin}#")
    await asyncio.sleep(0.2)
    await phone.keys("#")  # no password
    assert await wait_for(lambda: rig.jigasi.dialogs, 10)
    jigasi = JigasiSide(rig.jigasi.dialogs[0])
    # the controls start by saying the state and the key for it
    assert await wait_for(lambda: "unmuted" in rig.prompts.asked, WAIT)
    return rig, phone, jigasi


@pytest.fixture
async def in_call(make_rig):  # noqa: ANN001, ANN201
    rig, phone, jigasi = await join(make_rig)
    yield rig, phone, jigasi
    jigasi.task.cancel()
    await phone.hangup()


def loud_frames_heard(phone, seconds: float):  # noqa: ANN001, ANN201
    """Loud frames the phone hears in the next ``seconds`` (the stand-in echoes its audio)."""

    async def measure() -> int:
        start = len(phone.rtp.received_energy)
        await asyncio.sleep(seconds)
        return sum(1 for e in phone.rtp.received_energy[start:] if e > 1000)

    return measure()


async def test_star6_sends_mute_request_and_ok_changes_the_prompt(in_call) -> None:  # noqa: ANN001
    rig, phone, jigasi = in_call
    assert await loud_frames_heard(phone, 0.5) > 10  # our tone comes back through Jigasi
    await phone.keys("*6")
    request = await jigasi.next()
    assert set(request) == {"type", "id", "data"}
    assert request["type"] == "muteRequest" and isinstance(request["id"], str)
    assert request["data"] == {"audio": True}
    asked = len(rig.prompts.asked)
    ok = {"type": "muteResponse", "id": request["id"], "status": "OK", "data": {"audio": True}}
    assert await jigasi.send(ok) == 200
    assert await wait_for(lambda: "muted" in rig.prompts.asked[asked:], WAIT)
    # and our bridge really stops the caller's audio towards Jigasi
    await asyncio.sleep(0.3)
    assert await loud_frames_heard(phone, 0.5) < 3
    await phone.keys("*6")
    request = await jigasi.next()
    assert request["data"] == {"audio": False}
    asked = len(rig.prompts.asked)
    ok.update(id=request["id"], data={"audio": False})
    await jigasi.send(ok)
    assert await wait_for(lambda: "unmuted" in rig.prompts.asked[asked:], WAIT)
    await asyncio.sleep(0.3)
    assert await loud_frames_heard(phone, 0.5) > 10


async def test_star5_then_star6_still_works(in_call) -> None:  # noqa: ANN001
    rig, phone, jigasi = in_call
    await phone.keys("*5")
    await asyncio.sleep(0.3)
    await phone.keys("*6")
    request = await jigasi.next()
    assert request["type"] == "muteRequest" and request["data"] == {"audio": True}


async def test_heartbeats_are_echoed(in_call) -> None:  # noqa: ANN001
    rig, phone, jigasi = in_call
    for _ in range(2):
        assert await jigasi.send({"t": 11}) == 200
        assert await jigasi.next() == {"t": 11}


async def test_jigasi_mute_request_is_answered_and_announced(in_call) -> None:  # noqa: ANN001
    rig, phone, jigasi = in_call
    asked = len(rig.prompts.asked)
    await jigasi.send({"type": "muteRequest", "data": {"audio": True}, "id": "moderator-1"})
    assert await jigasi.next() == {
        "type": "muteResponse",
        "id": "moderator-1",
        "status": "OK",
        "data": {"audio": True},
    }
    assert await wait_for(lambda: "muted" in rig.prompts.asked[asked:], WAIT)


async def test_lobby_messages_produce_prompts_and_the_password_goes_as_t4(in_call) -> None:  # noqa: ANN001
    rig, phone, jigasi = in_call
    await jigasi.send({"i": 0, "t": 3})
    assert await wait_for(lambda: "lobby_wait" in rig.prompts.asked, WAIT)
    await phone.keys("4711#")
    assert await jigasi.next() == {"t": 4, "d": {"pwd": "4711"}}
    await jigasi.send({"i": 1, "t": 5})
    await jigasi.send({"i": 2, "t": 6})
    assert await wait_for(lambda: "lobby_joined" in rig.prompts.asked, WAIT)


async def test_lobby_rejection_is_said_then_the_call_ends(in_call) -> None:  # noqa: ANN001
    rig, phone, jigasi = in_call
    await jigasi.send({"i": 0, "t": 3})
    await jigasi.send({"i": 1, "t": 7})
    assert await wait_for(lambda: "lobby_rejected" in rig.prompts.asked, WAIT)
    assert await phone.ended(WAIT) == "remote bye"


async def test_malformed_json_is_answered_200_and_keys_still_work(in_call) -> None:  # noqa: ANN001
    rig, phone, jigasi = in_call
    assert await jigasi.send("{not json") == 200
    await phone.keys("*6")
    assert (await jigasi.next())["type"] == "muteRequest"


async def test_time_warning_before_the_maximum_duration(make_rig) -> None:  # noqa: ANN001
    rig, phone, jigasi = await join(
        make_rig, limits={"max_call_seconds": 4, "warn_before_end_seconds": 2}
    )
    try:
        assert "time_warning" not in rig.prompts.asked
        assert await wait_for(lambda: "time_warning" in rig.prompts.asked, WAIT)
        assert await phone.ended(WAIT) == "remote bye"  # the engine's limit ends the call
    finally:
        jigasi.task.cancel()
        await phone.hangup()
