"""The asyncio edge of the in-call controls, with recording ports (no SIP, no media)."""

from __future__ import annotations

import asyncio
import itertools
import json

from dialbridge.calls.in_call import InCallControls, InCallSession, InCallSettings


class RecordingPorts:
    """Ports whose INFO responses and prompt ends the test releases by hand."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.info_status: dict[str, asyncio.Future[int]] = {}
        self.playing: list[tuple[str, asyncio.Future[bool]]] = []
        self.hold_infos = False

    async def send_info(self, content_type: str, body: str) -> int:
        self.log.append(("info", json.loads(body)))
        if not self.hold_infos:
            return 200
        fut = asyncio.get_running_loop().create_future()
        self.info_status[json.loads(body).get("id", "")] = fut
        return await fut

    async def play(self, prompt: str) -> bool:
        self.log.append(("play", prompt))
        fut = asyncio.get_running_loop().create_future()
        self.playing.append((prompt, fut))
        return await fut

    async def stop_prompts(self) -> None:
        self.log.append(("stop",))

    async def set_local_mute(self, muted: bool) -> None:
        self.log.append(("mute", muted))

    async def hangup(self, reason: str) -> None:
        self.log.append(("hangup", reason))

    def finish_prompt(self) -> None:
        self.playing = [(p, f) for p, f in self.playing if not f.done()]  # drop stopped ones
        prompt, fut = self.playing.pop(0)
        fut.set_result(True)

    def take(self) -> list[tuple]:
        out, self.log = self.log, []
        return out


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def session(ports: RecordingPorts, **kw) -> InCallSession:  # noqa: ANN003
    ids = (f"req-{n}" for n in itertools.count(1))
    s = InCallSession(InCallControls(InCallSettings(**kw), new_id=lambda: next(ids)), ports)
    s.start()
    return s


async def test_star6_sends_the_request_and_the_response_is_spoken() -> None:
    ports = RecordingPorts()
    s = session(ports)
    await settle()
    assert ports.take() == [("play", "unmuted")]
    s.digit("*")
    s.digit("6")
    await settle()
    assert ports.take() == [
        ("info", {"type": "muteRequest", "id": "req-1", "data": {"audio": True}})
    ]
    s.info(
        "application/json",
        b'{"type":"muteResponse","id":"req-1","status":"OK","data":{"audio":true}}',
    )
    await settle()
    # the start announcement is interrupted: stop it, then say the new state
    assert ports.take() == [("mute", True), ("stop",), ("play", "muted")]
    s.close()


async def test_jigasi_may_send_its_response_before_answering_our_info() -> None:
    ports = RecordingPorts()
    ports.hold_infos = True
    s = session(ports, announce_on_start=False)
    s.digit("*")
    s.digit("6")
    await settle()
    assert "req-1" in ports.info_status  # our INFO is still unanswered...
    s.info(
        "application/json",
        '{"type":"muteResponse","id":"req-1","status":"OK","data":{"audio":true}}',
    )
    await settle()
    assert ("play", "muted") in ports.take()  # ...and the response is handled anyway
    ports.info_status["req-1"].set_result(200)
    await settle()
    assert s.controls.pending is None
    s.close()


async def test_heartbeat_is_echoed_while_a_prompt_plays() -> None:
    ports = RecordingPorts()
    s = session(ports)
    await settle()
    s.info("application/json", '{"t":11}')
    await settle()
    assert ("info", {"t": 11}) in ports.take()
    s.close()


async def test_queued_prompts_play_in_order_and_rejection_hangs_up_after_its_prompt() -> None:
    ports = RecordingPorts()
    s = session(ports, announce_on_start=False)
    s.info("application/json", '{"t":8,"d":true}')
    s.info("application/json", '{"t":9}')
    await settle()
    assert ports.take() == [("play", "moderation_on")]
    ports.finish_prompt()
    await settle()
    assert ports.take() == [("play", "unmute_allowed")]
    s.info("application/json", '{"i":0,"t":7}')
    await settle()
    assert ports.take() == [("stop",), ("play", "lobby_rejected")]
    ports.finish_prompt()
    await settle()
    assert ports.take() == [("hangup", "not admitted from the lobby")]
    s.close()


async def test_mute_response_timeout_fires_on_the_loop_timer() -> None:
    ports = RecordingPorts()
    s = session(ports, announce_on_start=False, mute_response_timeout=0.05)
    s.digit("*")
    s.digit("6")
    await settle()
    ports.take()
    await asyncio.sleep(0.1)  # the edge's own timer (the core's timing is tested with a fake clock)
    await settle()
    assert ports.take() == [("mute", True), ("play", "muted")]
    s.close()


async def test_failing_ports_do_not_break_the_controls() -> None:
    class Broken(RecordingPorts):
        async def send_info(self, content_type: str, body: str) -> int:
            raise ConnectionError("dialog gone")

    ports = Broken()
    s = session(ports, announce_on_start=False)
    s.digit("*")
    s.digit("6")
    await settle()
    # a failed send counts as an error response: the request is given up at once
    assert s.controls.pending is None
    assert ("mute", True) in ports.take()
    s.close()


async def test_close_cancels_everything() -> None:
    ports = RecordingPorts()
    s = session(ports)
    s.duration_warning(120)
    await settle()
    s.close()
    await s.wait_idle()
    assert s._timer is None
    s.digit("*")
    s.digit("6")
    await settle()
    assert [e for e in ports.take() if e[0] == "info"] == []


# -- run_in_call against a call object with the engine's event semantics ------------------------


class FakeLeg:
    def __init__(self, leg_id: str) -> None:
        self.id = leg_id
        self.codec = "PCMA"
        self.sent: list[dict] = []

    async def send_info(self, content_type: str, body: str) -> int:
        self.sent.append(json.loads(body))
        return 200


class FakeCall:
    """History plus fan-out events "from now on", like dialbridge.calls.call.Call."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.config = SimpleNamespace()
        self.language = "en"
        self.history: list = []
        self.played: list[str] = []
        self._subscribers: list[asyncio.Queue] = []
        self.ended = asyncio.get_running_loop().create_future()
        self.engine = SimpleNamespace(
            prompts=SimpleNamespace(path=lambda key, language, codec: key),
            media=SimpleNamespace(stop=self._noop, mute=self._noop),
        )

    async def _noop(self, *args) -> None:  # noqa: ANN002
        pass

    def emit(self, event: object) -> None:
        self.history.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def events(self):  # noqa: ANN201
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while not self.ended.done():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, self.ended}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()
        finally:
            self._subscribers.remove(queue)

    async def play(self, leg: FakeLeg, *, prompt: str) -> bool:
        self.played.append(prompt)
        return True

    async def hangup(self, cause: str, *, side: str) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


async def test_jigasi_infos_from_before_the_bridge_are_replayed_and_ivr_digits_are_not() -> None:
    from dialbridge.calls.call import Digit, Info
    from dialbridge.calls.in_call import run_in_call

    call, jigasi, pstn = FakeCall(), FakeLeg("j"), FakeLeg("p")
    call.emit(Digit("p", "1", "rfc4733"))  # the IVR's PIN digits
    call.emit(Info("j", "application/json", b'{"i":0,"t":3}'))  # Jigasi lobbied at once
    call.emit(Info("j", "application/json", b'{"t":11}'))
    task = asyncio.create_task(run_in_call(call, jigasi, pstn))
    await settle()
    assert call.played == ["lobby_wait"]  # no "unmuted" greeting over the lobby message
    assert jigasi.sent == [{"t": 11}]
    for digit in "42#":
        call.emit(Digit("p", digit, "rfc4733"))
    await settle()
    assert jigasi.sent[-1] == {"t": 4, "d": {"pwd": "42"}}
    call.emit(Info("j", "application/json", b'{"i":1,"t":7}'))
    await asyncio.wait_for(task, 5)  # rejected: said, hung up, the controls returned
    assert call.played[-1] == "lobby_rejected"
    assert call.ended.done()


async def test_start_muted_request_from_before_the_bridge_is_answered_without_a_greeting() -> None:
    from dialbridge.calls.call import Info
    from dialbridge.calls.in_call import run_in_call

    call, jigasi, pstn = FakeCall(), FakeLeg("j"), FakeLeg("p")
    call.emit(
        Info("j", "application/json", b'{"type":"muteRequest","data":{"audio":true},"id":"s"}')
    )
    task = asyncio.create_task(run_in_call(call, jigasi, pstn))
    await settle()
    assert jigasi.sent == [
        {"type": "muteResponse", "id": "s", "status": "OK", "data": {"audio": True}}
    ]
    assert call.played == ["muted"]
    call.ended.set_result(None)
    await asyncio.wait_for(task, 5)
