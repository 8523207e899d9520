"""Dial-in with baresip (Debian baresip-core) as the Jigasi stand-in: it registers as
``jigasi`` with digest and auto-answers; we read the INVITE it received from its SIP trace.
The docker-jitsi-meet header names are configured, so the spelling check is real."""

from __future__ import annotations

import asyncio

import pytest

from dialbridge.calls.standins import wait_for
from tests.sip.peers.baresip import BARESIP, Baresip, BaresipAccount, BaresipConfig

from .conftest import JIGASI_PASSWORD, MUC
from .test_dial_in import DID

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(BARESIP is None, reason="baresip not installed (Debian baresip-core)"),
]


async def test_baresip_as_jigasi_gets_the_room_in_the_configured_header(make_rig, tmp_path) -> None:
    rig = await make_rig(
        register=False,
        jigasi={"room_header": "X-Room-Name", "password_header": "X-Room-Pass",
                "domain_base_header": "X-Domain-Base", "domain_base": "meet.example.com"},
    )  # fmt: skip
    host, port = rig.engine.ua.local_addresses["udp"]
    config = BaresipConfig(
        tmp_path / "baresip",
        accounts=[BaresipAccount("jigasi", f"{host}:{port}", JIGASI_PASSWORD)],
    )
    jigasi = Baresip(config, lifetime=30)
    await jigasi.start()
    try:
        await jigasi.wait_registered("jigasi", timeout=10)
        pin = await rig.pin_for("weekly")
        call = await rig.phone.dial(DID, caller="+4930123456712")
        await call.answered()
        await asyncio.sleep(0.3)
        await call.keys(f"{pin}#", method="info")
        await asyncio.sleep(0.3)
        await call.keys("77#", method="info")
        assert await wait_for(lambda: any(c.bridged_at for c in rig.engine.calls.values()), 10), (
            jigasi.output[-3000:]
        )
        invites = [
            m for m in jigasi.messages() if m.method == "INVITE" and m.direction == "received"
        ]
        assert invites, jigasi.output[-3000:]
        invite = invites[0]
        assert invite.header("X-Room-Name") == f"weekly@{MUC}"
        assert invite.header("X-Room-Pass") == "77"
        assert invite.header("X-Domain-Base") == "meet.example.com"
        assert "Jitsi-Conference-Room:" not in invite.text
        assert "X-Room-Name: " in invite.text  # the exact spelling on the wire
        assert invite.src == (host, port)  # from the registrar's socket (§1.1)
        await call.hangup()
        assert await wait_for(lambda: not rig.engine.calls, 5)
    finally:
        await jigasi.quit()
