"""Dial-out end to end: Jigasi stand-in → dialbridge → trunk stand-in, on loopback."""

from __future__ import annotations

import asyncio

from dialbridge.calls.standins import SimulatedJigasi, start_media, wait_for

from .conftest import JIGASI_PASSWORD, MUC

ROOM = f"weekly@{MUC}"


async def test_dial_out_uses_the_german_did_and_bridges(make_rig) -> None:
    rig = await make_rig()
    outgoing, rtp = await rig.jigasi.dial_out("+4930901820", ROOM)
    statuses = []
    async for response in outgoing.responses():
        statuses.append(response.status)
    assert 180 in statuses and statuses[-1] == 200
    (invite,) = rig.trunk.invites
    assert invite.request_uri.startswith("sip:+4930901820@127.0.0.2")
    assert "<sip:+49301234567@" in invite.from_header  # the configured German DID
    dialog = outgoing.dialog
    start_media(rtp, outgoing.local_offer, dialog.remote_sdp, local_is_offerer=True)
    assert await wait_for(lambda: rig.trunk.rtp_ports and rig.trunk.rtp_ports[0].received > 30, 5)
    await dialog.bye()
    assert await wait_for(lambda: rig.trunk.dialogs[0].is_terminated, 5)
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.direction == "out" and cdr.destination == "+4930901820"
    assert cdr.hangup_side == "jigasi"


async def test_us_destination_gets_the_us_did(make_rig) -> None:
    rig = await make_rig()
    outgoing, _ = await rig.jigasi.dial_out("+12025550199", ROOM)
    final = await asyncio.wait_for(asyncio.shield(outgoing.final), 5)
    assert final.status == 200
    assert "<sip:+12025550143@" in rig.trunk.invites[0].from_header
    await outgoing.dialog.bye()


async def test_premium_rate_number_gets_403_with_reason_and_no_trunk_invite(make_rig) -> None:
    rig = await make_rig()
    outgoing, _ = await rig.jigasi.dial_out("+499001234567", ROOM)
    final = await asyncio.wait_for(asyncio.shield(outgoing.final), 5)
    assert final.status == 403
    assert "premium-rate" in final.headers.get("Reason")
    await asyncio.sleep(0.3)
    assert not rig.trunk.invites
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.sip_status == 403 and cdr.hangup_cause == "premium-rate number"


async def test_country_not_allowed_gets_403(make_rig) -> None:
    rig = await make_rig()
    outgoing, _ = await rig.jigasi.dial_out("+33142685300", ROOM)
    final = await asyncio.wait_for(asyncio.shield(outgoing.final), 5)
    assert final.status == 403 and "not allowed" in final.headers.get("Reason")
    assert not rig.trunk.invites


async def test_cancel_from_jigasi_while_the_trunk_rings_cancels_the_trunk_at_once(make_rig) -> None:
    rig = await make_rig()
    rig.trunk.behaviour.answer = False
    outgoing, _ = await rig.jigasi.dial_out("+4930901820", ROOM)
    assert await wait_for(lambda: rig.trunk.invites, 5)
    await asyncio.sleep(0.2)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await outgoing.cancel()
    assert await wait_for(lambda: rig.trunk.cancelled, 2)
    assert loop.time() - t0 < 0.5
    final = await asyncio.wait_for(asyncio.shield(outgoing.final), 5)
    assert final.status == 487


async def test_busy_trunk_gives_jigasi_486(make_rig) -> None:
    rig = await make_rig()
    rig.trunk.behaviour.reject_with = 486
    outgoing, _ = await rig.jigasi.dial_out("+4930901820", ROOM)
    final = await asyncio.wait_for(asyncio.shield(outgoing.final), 5)
    assert final.status == 486


async def test_no_answer_gives_jigasi_408_and_cancels_the_trunk(make_rig) -> None:
    rig = await make_rig()
    rig.trunk.behaviour.answer = False
    outgoing, _ = await rig.jigasi.dial_out("+4930901820", ROOM)
    final = await asyncio.wait_for(asyncio.shield(outgoing.final), 8)
    assert final.status == 408
    assert await wait_for(lambda: rig.trunk.cancelled, 2)


async def test_dial_out_is_only_for_jigasi_not_other_sip_users(make_rig) -> None:
    rig = await make_rig(
        users=[{"name": "jigasi", "password": JIGASI_PASSWORD},
               {"name": "alice", "password": "alice-secret"}],
    )  # fmt: skip
    alice = SimulatedJigasi(host="127.0.0.1", dialbridge=rig.engine.ua.local_addresses["udp"],
                            domain="127.0.0.1", user="alice", password="alice-secret")  # fmt: skip
    await alice.ua.start()
    try:
        outgoing, _ = await alice.dial_out("+4930901820", ROOM)
        final = await asyncio.wait_for(asyncio.shield(outgoing.final), 5)
        assert final.status == 403  # authenticated by digest, but not Jigasi
        assert not rig.trunk.invites
    finally:
        await alice.close()


async def test_early_media_from_the_trunk_is_relayed_to_jigasi_before_the_answer(make_rig) -> None:
    rig = await make_rig()
    rig.trunk.behaviour.early_media = True
    rig.trunk.behaviour.ring_for = 1.0
    outgoing, rtp = await rig.jigasi.dial_out("+4930901820", ROOM)
    early = None
    async for response in outgoing.responses():
        if response.status == 183 and response.body:
            early = response
            start_media(rtp, outgoing.local_offer, response.body, local_is_offerer=True)
            # The carrier's announcement reaches Jigasi before anyone answers.
            assert await wait_for(lambda: rtp.received > 10, 0.9)
            assert not outgoing.final.done()
    assert early is not None
    assert outgoing.final.result().status == 200
    await outgoing.dialog.bye()


async def test_a_trunk_that_challenges_gets_digest_credentials(make_rig, tmp_path) -> None:
    from dialbridge.calls.standins import SimulatedTrunk

    carrier = SimulatedTrunk(host="127.0.0.3", digest=("acct", "carrier-secret"))
    port = await carrier.start()
    try:
        rig = await make_rig(trunks=[
            {"name": "carrier", "networks": ["127.0.0.2/32"], "host": "127.0.0.3",
             "port": port, "username": "acct", "password": "carrier-secret"},
        ])  # fmt: skip
        outgoing, _ = await rig.jigasi.dial_out("+4930901820", ROOM)
        final = await asyncio.wait_for(asyncio.shield(outgoing.final), 5)
        assert final.status == 200
        assert carrier.authenticated_as == "acct"
        await outgoing.dialog.bye()
    finally:
        await carrier.close()
