"""The standalone demo server, run as a subprocess the way the interop tests run it."""

import asyncio
import sys
import time

import pytest

from dialbridge.sip.ua import Credentials, InfoReceived, UserAgent, UserAgentConfig
from tests.sip.peers.ports import free_port

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
pytestmark = pytest.mark.slow


class DemoProcess:
    def __init__(self, *args):
        self.args = args
        self.lines: list[str] = []

    async def __aenter__(self):
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dialbridge.sip.demo_server", *self.args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await self.expect("ready")
        return self

    async def expect(self, name, timeout=10.0, **fields):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if self._matches(line, name, fields):
                    self.lines.remove(line)
                    return line
            raw = await asyncio.wait_for(self.proc.stdout.readline(), deadline - time.monotonic())
            if not raw:
                break
            self.lines.append(raw.decode().strip())
        raise AssertionError(f"no EVENT {name} {fields}; saw {self.lines}")

    @staticmethod
    def _matches(line, name, fields):
        words = line.split()
        if words[:2] != ["EVENT", name]:
            return False
        values = dict(w.split("=", 1) for w in words[2:] if "=" in w)
        return all(values.get(k) == str(v) for k, v in fields.items())

    async def command(self, port, line):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(line.encode() + b"\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        return reply.decode().strip()

    async def __aexit__(self, *exc):
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.mark.parametrize("kind", ["udp", "tcp"])
async def test_demo_server_calls_registered_user_over_its_register_flow(kind):
    port, control = free_port(), free_port()
    got = asyncio.Queue()

    async def router(call):
        await got.put(call)
        await call.answer(SDP)

    async with DemoProcess(
        f"--{kind}", f"127.0.0.1:{port}", "--user", "jigasi:secret",
        "--control", f"127.0.0.1:{control}", "--domain", "127.0.0.1",
    ) as demo:  # fmt: skip
        config = UserAgentConfig(
            udp=[("127.0.0.1", 0)], tcp=[("127.0.0.1", 0)] if kind == "tcp" else []
        )
        async with UserAgent(config, router=router) as jigasi:
            transport = "" if kind == "udp" else ";transport=tcp"
            response = await asyncio.wait_for(
                jigasi.register(f"sip:127.0.0.1:{port}{transport}", "sip:jigasi@127.0.0.1",
                                credentials=Credentials("jigasi", "secret")),
                10,
            )  # fmt: skip
            assert response.status == 200
            await demo.expect("registered", aor="sip:jigasi@127.0.0.1")
            reply = await demo.command(control, "call jigasi")
            assert reply == "OK 200"
            call = await asyncio.wait_for(got.get(), 10)
            assert call.flow.remote[1] == port  # left from the registrar's port
            assert call.flow.transport == kind
            dialog = call.dialog
            response = await asyncio.wait_for(dialog.info("application/json", '{"t":11}'), 10)
            assert response.status == 200
            # The demo sends an INFO back.
            async for event in dialog.events():
                if isinstance(event, InfoReceived):
                    assert b"echo" in event.body
                    break
            await demo.expect("info-in", call_id=call.request.call_id)
            assert (await demo.command(control, "bye-all")) == "OK"
            assert await asyncio.wait_for(dialog.terminated, 10) == "remote bye"


async def test_demo_server_answers_offerless_invite_with_an_offer():
    port = free_port()
    async with (
        DemoProcess("--udp", f"127.0.0.1:{port}") as demo,
        UserAgent(UserAgentConfig(udp=[("127.0.0.1", 0)])) as caller,
    ):
        call = await caller.invite(f"sip:echo@127.0.0.1:{port}")
        final = await asyncio.wait_for(call.final, 10)
        assert final.status == 200 and b"m=audio" in final.body
        await call.ack(SDP)
        await demo.expect("AckReceived", call_id=call.request.call_id)
        await asyncio.wait_for(call.dialog.bye(), 10)
