"""In-call controls with a real phone: baresip (Debian baresip-core) dials a DID through the
trunk address, keys the PIN and then ``*5`` ``*6`` as RFC 4733 events from its own RTP stack;
dialbridge bridges it to the Jigasi stand-in, which sees the muteRequest INFO and answers it."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from dialbridge.calls.standins import wait_for
from dialbridge.sip.ua import InfoReceived
from tests.sip.peers.baresip import MODULE_PATH, Baresip, BaresipConfig
from tests.sip.peers.ports import free_port

pytestmark = [
    pytest.mark.peers,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (baresip-core) absent"),
]

PHONE_HOST = "127.0.0.3"  # a trunk network of its own: on lo, but not dialbridge's address
DID = "+493012345670"


class PhoneConfig(BaresipConfig):
    """baresip on PHONE_HOST, no registration, PCMA only; console on 127.0.0.1."""

    def write(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            ("poll_method", "epoll"),
            ("sip_listen", f"{PHONE_HOST}:{self.sip_port}"),
            ("net_interface", PHONE_HOST),
            ("audio_player", "aubridge,nil"),
            ("audio_source", "aubridge,nil"),
            ("audio_alert", "aubridge,nil"),
            ("rtp_ports", f"{self.rtp_port_base}-{self.rtp_port_base + 9}"),
            ("module_path", MODULE_PATH),
            ("module", "cons.so"),
            ("module", "g711.so"),
            ("module", "aubridge.so"),
            ("module_app", "account.so"),
            ("module_app", "menu.so"),
            ("cons_listen", f"127.0.0.1:{self.cons_port}"),
        ]
        (self.directory / "config").write_text("".join(f"{k}\t\t{v}\n" for k, v in lines))
        (self.directory / "accounts").write_text(
            f"<sip:+4930333333333@{PHONE_HOST}>;regint=0;answermode=manual"
            ";audio_codecs=PCMA/8000/1\n"
        )
        (self.directory / "contacts").write_text("")
        return self.directory


async def key(phone: Baresip, digits: str) -> None:
    """One digit per console datagram, each released with \\x04 (stack-notes §6.2)."""
    for digit in digits:
        phone.command(digit)
        await asyncio.sleep(0.15)
        phone.command("\x04")
        await asyncio.sleep(0.15)


async def test_baresip_star5_star6_reaches_jigasi_as_mute_request(make_rig, tmp_path) -> None:  # noqa: ANN001
    rig = await make_rig(
        trunks=[{"name": "carrier", "networks": ["127.0.0.2/32", f"{PHONE_HOST}/32"],
                 "host": "127.0.0.2", "port": free_port()}]
    )  # fmt: skip
    pin = await rig.pin_for("weekly")
    host, port = rig.engine.ua.local_addresses["udp"]
    phone = Baresip(PhoneConfig(tmp_path / "baresip"), lifetime=60)
    await phone.start()
    try:
        await phone.wait_ready()
        phone.command(f"/dial sip:{DID}@{host}:{port}")
        await phone.wait_for(r"Call established|call established", 10)
        assert await wait_for(lambda: "enter_pin" in rig.prompts.asked, 5)
        await key(phone, f"{pin}#")
        assert await wait_for(lambda: "enter_password" in rig.prompts.asked, 5)
        await key(phone, "#")
        assert await wait_for(lambda: rig.jigasi.dialogs, 10)
        dialog = rig.jigasi.dialogs[0]
        infos: asyncio.Queue[dict] = asyncio.Queue()

        async def watch() -> None:
            async for event in dialog.events():
                if isinstance(event, InfoReceived):
                    infos.put_nowait(json.loads(event.body))

        watcher = asyncio.create_task(watch())
        assert await wait_for(lambda: "unmuted" in rig.prompts.asked, 5)
        await key(phone, "*5")
        await key(phone, "*6")
        request = await asyncio.wait_for(infos.get(), 5)
        assert request["type"] == "muteRequest" and isinstance(request["id"], str)
        assert request["data"] == {"audio": True}
        asked = len(rig.prompts.asked)
        ok = {"type": "muteResponse", "id": request["id"], "status": "OK", "data": {"audio": True}}
        await dialog.info("application/json", json.dumps(ok))
        assert await wait_for(lambda: "muted" in rig.prompts.asked[asked:], 5)
        watcher.cancel()
        # the digits travelled as RFC 4733 events: both SDPs carry telephone-event
        trace = phone.messages()
        offer = [m for m in trace if m.method == "INVITE" and m.direction == "sent"][0]
        answer = [m for m in trace if m.status == 200 and m.direction == "received"][0]
        assert "telephone-event/8000" in offer.body and "telephone-event/8000" in answer.body
        phone.command("/hangup")
        assert await wait_for(lambda: not rig.engine.calls, 5)
    finally:
        await phone.quit()
