"""The in-call controls over real SIP on loopback: our UA and a Jigasi stand-in (a second
dialbridge UA that speaks Jigasi's INFO JSON), UDP. Digits are fed to the session directly;
prompts are recorded by key instead of played (the media path has its own tests)."""

from __future__ import annotations

import asyncio
import json

import pytest

from dialbridge.calls.in_call import InCallControls, InCallSession, InCallSettings
from dialbridge.sip.security import Trunk
from dialbridge.sip.ua import ByeReceived, DialogEnded, InfoReceived, UserAgent, UserAgentConfig

LO = "127.0.0.1"
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
WAIT = 5.0


def config() -> UserAgentConfig:
    return UserAgentConfig(udp=[(LO, 0)], trunks=[Trunk.from_cidrs("lo", ["127.0.0.0/8"])])


async def wait(awaitable):  # noqa: ANN001, ANN201
    return await asyncio.wait_for(awaitable, WAIT)


class DialogPorts:
    """Ports over a real dialog; prompts are recorded and end at once."""

    def __init__(self, dialog) -> None:  # noqa: ANN001
        self.dialog = dialog
        self.prompts: asyncio.Queue[str] = asyncio.Queue()
        self.muted: list[bool] = []
        self.hung_up = asyncio.get_running_loop().create_future()

    async def send_info(self, content_type: str, body: str) -> int:
        return (await self.dialog.info(content_type, body)).status

    async def play(self, prompt: str) -> bool:
        self.prompts.put_nowait(prompt)
        await asyncio.sleep(0)
        return True

    async def stop_prompts(self) -> None:
        pass

    async def set_local_mute(self, muted: bool) -> None:
        self.muted.append(muted)

    async def hangup(self, reason: str) -> None:
        await self.dialog.bye()
        self.hung_up.set_result(reason)


class JigasiStandIn:
    """The far side of the dialog: collects our INFOs, sends Jigasi's."""

    def __init__(self) -> None:
        self.calls: asyncio.Queue = asyncio.Queue()
        self.infos: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()
        self.bye = asyncio.get_running_loop().create_future()

    async def __call__(self, call) -> None:  # noqa: ANN001 - the UA's router
        dialog = await call.answer(SDP)
        await self.calls.put(dialog)

    async def watch(self, dialog) -> None:  # noqa: ANN001
        async for event in dialog.events():
            if isinstance(event, InfoReceived):
                self.infos.put_nowait((event.content_type, json.loads(event.body)))
            elif isinstance(event, ByeReceived | DialogEnded) and not self.bye.done():
                self.bye.set_result(event)

    async def next_info(self) -> dict:
        content_type, body = await wait(self.infos.get())
        assert content_type == "application/json"
        return body


async def feed_infos(dialog, session: InCallSession) -> None:  # noqa: ANN001
    async for event in dialog.events():
        if isinstance(event, InfoReceived):
            session.info(event.content_type, event.body)


@pytest.fixture
async def bridged():  # noqa: ANN201
    jigasi = JigasiStandIn()
    ours_ua = UserAgent(config())
    theirs_ua = UserAgent(config(), router=jigasi)
    await ours_ua.start()
    await theirs_ua.start()
    tasks = []
    try:
        host, port = theirs_ua.local_addresses["udp"]
        call = await ours_ua.invite(f"sip:jigasi@{host}:{port}", sdp=SDP)
        ours = await wait(call.answered())
        theirs = await wait(jigasi.calls.get())
        await wait(theirs.acked)
        ports = DialogPorts(ours)
        session = InCallSession(InCallControls(InCallSettings()), ports)
        tasks += [
            asyncio.create_task(feed_infos(ours, session)),
            asyncio.create_task(jigasi.watch(theirs)),
        ]
        session.start()
        assert await wait(ports.prompts.get()) == "unmuted"
        yield session, ports, jigasi, theirs
        session.close()
    finally:
        for task in tasks:
            task.cancel()
        await ours_ua.close()
        await theirs_ua.close()


async def eventually(condition) -> None:  # noqa: ANN001
    while not condition():
        await asyncio.sleep(0.005)


def keys(session: InCallSession, digits: str) -> None:
    for digit in digits:
        session.digit(digit)


async def test_star6_mute_request_and_ok_response_over_sip(bridged) -> None:  # noqa: ANN001
    session, ports, jigasi, theirs = bridged
    keys(session, "*5")  # a wrong key first: it must not disable *6
    keys(session, "*6")
    request = await jigasi.next_info()
    assert request["type"] == "muteRequest"
    assert isinstance(request["id"], str) and request["id"]
    assert request == {"type": "muteRequest", "id": request["id"], "data": {"audio": True}}
    response = {
        "type": "muteResponse",
        "data": {"audio": True},
        "id": request["id"],
        "status": "OK",
    }
    assert (await wait(theirs.info("application/json", json.dumps(response)))).status == 200
    assert await wait(ports.prompts.get()) == "muted"
    assert ports.muted == [True]
    keys(session, "*6")
    request = await jigasi.next_info()
    assert request["data"] == {"audio": False}
    response.update(id=request["id"], data={"audio": False})
    await wait(theirs.info("application/json", json.dumps(response)))
    assert await wait(ports.prompts.get()) == "unmuted"


async def test_heartbeat_is_echoed_over_sip(bridged) -> None:  # noqa: ANN001
    session, ports, jigasi, theirs = bridged
    for _ in range(3):
        assert (await wait(theirs.info("application/json", '{"t":11}'))).status == 200
        assert await jigasi.next_info() == {"t": 11}


async def test_jigasi_mute_request_gets_a_mute_response_over_sip(bridged) -> None:  # noqa: ANN001
    session, ports, jigasi, theirs = bridged
    body = '{"type":"muteRequest","data":{"audio":true},"id":"0d5e-uuid"}'
    assert (await wait(theirs.info("application/json", body))).status == 200
    assert await jigasi.next_info() == {
        "type": "muteResponse",
        "id": "0d5e-uuid",
        "status": "OK",
        "data": {"audio": True},
    }
    assert await wait(ports.prompts.get()) == "muted"


async def test_lobby_prompts_password_and_rejection_over_sip(bridged) -> None:  # noqa: ANN001
    session, ports, jigasi, theirs = bridged
    await wait(theirs.info("application/json", '{"i":0,"t":3}'))
    assert await wait(ports.prompts.get()) == "lobby_wait"
    keys(session, "4711#")
    assert await jigasi.next_info() == {"t": 4, "d": {"pwd": "4711"}}
    assert await wait(ports.prompts.get()) == "connecting"
    await wait(theirs.info("application/json", '{"i":1,"t":7}'))
    assert await wait(ports.prompts.get()) == "lobby_rejected"
    assert await wait(ports.hung_up) == "not admitted from the lobby"
    assert isinstance(await wait(jigasi.bye), ByeReceived)


async def test_lobby_admission_is_announced_over_sip(bridged) -> None:  # noqa: ANN001
    session, ports, jigasi, theirs = bridged
    await wait(theirs.info("application/json", '{"i":0,"t":3}'))
    assert await wait(ports.prompts.get()) == "lobby_wait"
    await wait(theirs.info("application/json", '{"i":1,"t":5}'))
    await wait(theirs.info("application/json", '{"i":2,"t":6}'))
    assert await wait(ports.prompts.get()) == "lobby_joined"


async def test_malformed_json_is_answered_200_and_the_controls_carry_on(bridged) -> None:  # noqa: ANN001
    session, ports, jigasi, theirs = bridged
    for body in ("{broken", '{"t":"11"}', "[]"):
        assert (await wait(theirs.info("application/json", body))).status == 200
    await wait(eventually(lambda: session.controls.remote_errors == 3))
    keys(session, "*6")
    assert (await jigasi.next_info())["type"] == "muteRequest"
