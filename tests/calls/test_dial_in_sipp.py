"""Dial-in with SIPp as the PSTN caller: PCMA from Debian's pcaps and RFC 2833 digits from
``dtmf_2833_*.pcap`` → dialbridge → the registered Jigasi stand-in."""

from __future__ import annotations

import asyncio

import pytest

from dialbridge.calls.standins import wait_for
from tests.sip.peers.ports import free_port
from tests.sip.peers.sipp import SIPP, Sipp

from .conftest import MUC, TRUNK_HOST
from .sipp_pstn import PCAPS, write_scenario

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed (Debian sip-tester)"),
    pytest.mark.skipif(
        not (PCAPS / "dtmf_2833_1.pcap").exists(), reason="Debian sip-tester pcaps missing"
    ),  # fmt: skip
]

# Any digits work: sipp_pstn chains the pcaps with fresh timestamps per key press.
PIN = "4811162342"  # repeated digits on purpose


async def _run(rig, tmp_path, entries, *, caller="+4930123456712", **timing):  # noqa: ANN001, ANN003, ANN202
    await rig.services.mappings.set_static(f"weekly@{MUC}", PIN)
    address = rig.engine.ua.local_addresses["udp"]
    scenario = write_scenario(tmp_path / "pstn.xml", entries, **timing)
    sipp = Sipp(scenario, tmp_path / "sipp", free_port(), remote=f"{address[0]}:{address[1]}",
                local_ip=TRUNK_HOST, service="+493012345670", timeout=40,
                keys={"caller": caller, "caller_name": "JOHN SMITH"},
                extra_args=["-mp", str(free_port() + 2)])  # fmt: skip
    result = await sipp.run()
    return result


async def test_sipp_caller_keys_pin_and_password_and_reaches_jigasi(make_rig, tmp_path) -> None:
    rig = await make_rig(ivr={"pin_timeout": 3, "password_timeout": 3})
    result = await _run(rig, tmp_path, [f"{PIN}#", "2468#"], hold_ms=2500, talk_ms=3000)
    assert result.returncode == 0, result.explain()
    (invite,) = rig.jigasi.invites
    assert invite.headers["Jitsi-Conference-Room"] == f"weekly@{MUC}"
    assert invite.headers["Jitsi-Conference-Room-Pass"] == "2468"
    assert invite.from_header.startswith('"+49 \u2022\u2022\u2022 \u2022\u2022\u2022\u2022 12"')
    assert invite.source == rig.engine.ua.local_addresses["udp"]
    # SIPp's PCMA (30 ms packets) went through the bridge into the meeting ...
    assert rig.jigasi.audio_packets_received > 100
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.bridged_at is not None and cdr.hangup_side == "caller"
    assert cdr.pin == PIN and cdr.loss_fraction is not None or cdr.duration > 2


async def test_sipp_caller_without_password_sends_no_password_header(make_rig, tmp_path) -> None:
    rig = await make_rig(ivr={"pin_timeout": 3, "password_timeout": 3})
    result = await _run(rig, tmp_path, [f"{PIN}#", "#"], hold_ms=2000, talk_ms=500)
    assert result.returncode == 0, result.explain()
    (invite,) = rig.jigasi.invites
    assert invite.headers["Jitsi-Conference-Room"] == f"weekly@{MUC}"
    assert "Jitsi-Conference-Room-Pass" not in invite.headers
    await asyncio.sleep(0)
