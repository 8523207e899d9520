"""Limits (duration, media timeout, concurrency, IVR time), routing rules and custom
scenarios, the Jigasi health check; plus the small pure parts (masking, routing table)."""

from __future__ import annotations

import asyncio

import pytest

from dialbridge.calls.call import DurationWarning
from dialbridge.calls.engine import mask_number
from dialbridge.calls.routing import CallRouter, CallSource
from dialbridge.calls.scenario import ScenarioError, load_scenario
from dialbridge.calls.standins import wait_for
from dialbridge.config import ConfigError, RouteEntry, load_config

from .conftest import MUC
from .test_dial_in import DID


async def _bridged_call(rig, caller: str):  # noqa: ANN001, ANN202
    pin = await rig.pin_for("weekly")
    phone = await rig.phone.dial(DID, caller=caller)
    await phone.answered()
    await asyncio.sleep(0.3)
    await phone.keys(f"{pin}##", method="info")
    assert await wait_for(lambda: rig.engine.calls and all(
        c.bridged_at for c in rig.engine.calls.values()), 5)  # fmt: skip
    return phone, next(iter(rig.engine.calls.values()))


async def test_max_duration_warns_then_hangs_up_both_legs(make_rig) -> None:
    rig = await make_rig(limits={"max_call_seconds": 1.5, "warn_before_end_seconds": 0.5})
    phone, call = await _bridged_call(rig, "+4930222222221")
    events = []

    async def watch() -> None:
        async for event in call.events():
            events.append(event)

    watcher = asyncio.ensure_future(watch())
    assert await phone.ended(5) == "remote bye"
    assert await wait_for(lambda: rig.jigasi.dialogs[0].is_terminated, 2)
    await asyncio.wait_for(watcher, 2)
    assert any(isinstance(e, DurationWarning) and e.remaining == 0.5 for e in events)
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.hangup_cause == "max duration"
    assert 1.3 < cdr.duration < 3.0


async def test_no_rtp_from_the_phone_hangs_up(make_rig) -> None:
    rig = await make_rig(limits={"media_timeout_seconds": 1.0})
    phone, call = await _bridged_call(rig, "+4930222222222")
    phone.rtp.stop_sending()
    assert await phone.ended(5) == "remote bye"
    assert await wait_for(lambda: rig.jigasi.dialogs[0].is_terminated, 2)
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.hangup_cause == "media timeout" and cdr.hangup_side == "caller"


async def test_calls_beyond_the_limit_get_503(make_rig) -> None:
    rig = await make_rig(limits={"max_concurrent_calls": 1})
    first = await rig.phone.dial(DID, caller="+4930222222223")
    await first.answered()
    second = await rig.phone.dial(DID, caller="+4930222222224")
    final = await asyncio.wait_for(asyncio.shield(second.outgoing.final), 5)
    assert final.status == 503
    assert rig.engine.metrics["refused_busy"] == 1
    await first.hangup()


async def test_the_ivr_time_limit_ends_a_call_that_never_joins(make_rig) -> None:
    rig = await make_rig(limits={"max_ivr_seconds": 1.0}, ivr={"pin_timeout": 5})
    phone = await rig.phone.dial(DID, caller="+4930222222225")
    await phone.answered()
    assert await phone.ended(5) == "remote bye"
    assert await wait_for(lambda: not rig.engine.calls, 5)
    (cdr,) = await rig.cdrs()
    assert cdr.hangup_cause == "ivr time limit"


async def test_jigasi_health_check_is_answered_and_gets_audio_at_once(make_rig) -> None:
    rig = await make_rig()
    outgoing, rtp = await rig.jigasi.dial_out("healthcheck", f"health@{MUC}")
    final = await asyncio.wait_for(asyncio.shield(outgoing.final), 5)
    assert final.status == 200
    from dialbridge.calls.standins import start_media

    start_media(rtp, outgoing.local_offer, outgoing.dialog.remote_sdp, local_is_offerer=True)
    # Jigasi passes the check when any RTP arrives within 10 s (jigasi-protocol.md §2.3).
    assert await wait_for(lambda: rtp.received > 5, 2)
    await outgoing.dialog.bye()
    assert not rig.trunk.invites


async def test_a_custom_scenario_from_config_uses_the_same_api(make_rig) -> None:
    rig = await make_rig(routes=[
        {"source": "trunk:carrier", "uri_user": r"\+4930999\d*",
         "scenario": "tests.calls.custom_scenario:board_line"},
        {"source": "trunk", "scenario": "dial_in"},
    ])  # fmt: skip
    phone = await rig.phone.dial("+4930999123", caller="+4930222222226")
    await phone.answered()
    assert await wait_for(lambda: rig.jigasi.dialogs, 5)
    assert rig.jigasi.invites[0].headers["Jitsi-Conference-Room"] == f"board@{MUC}"
    await phone.hangup()


async def test_an_invite_no_rule_matches_gets_404(make_rig) -> None:
    rig = await make_rig(routes=[{"source": "user", "scenario": "dial_out"}])
    phone = await rig.phone.dial(DID, caller="+4930222222227")
    final = await asyncio.wait_for(asyncio.shield(phone.outgoing.final), 5)
    assert final.status == 404


def test_routes_match_in_order_by_source_and_whole_uri_user() -> None:
    router = CallRouter([
        RouteEntry(source="user:jigasi", uri_user="healthcheck", scenario="jigasi_health"),
        RouteEntry(source="user", uri_user=r"\+?\d+", scenario="dial_out"),
        RouteEntry(source="trunk:carrier", uri_user=r"\+49.*", scenario="dial_in"),
    ])  # fmt: skip
    jigasi = CallSource(user="jigasi")
    assert router.match(jigasi, "healthcheck").scenario_name == "jigasi_health"
    assert router.match(jigasi, "+4930901820").scenario_name == "dial_out"
    assert router.match(jigasi, "+49x") is None  # fullmatch, not search
    assert router.match(CallSource(trunk="carrier"), "+4930123").scenario_name == "dial_in"
    assert router.match(CallSource(trunk="other"), "+4930123") is None
    assert router.match(CallSource(), "+4930123") is None


def test_a_scenario_that_is_not_an_async_function_is_refused() -> None:
    with pytest.raises(ScenarioError):
        load_scenario("tests.calls.custom_scenario:not_async")
    with pytest.raises(ScenarioError):
        load_scenario("no_such_module_here:x")


def test_config_names_the_key_of_a_bad_route() -> None:
    with pytest.raises(ConfigError, match=r"routes\.0\.uri_user"):
        load_config(None, routes=[{"uri_user": "(", "scenario": "dial_in"}])
    with pytest.raises(ConfigError, match=r"routes\.0\.scenario"):
        load_config(None, routes=[{"scenario": "rm -rf"}])
    with pytest.raises(ConfigError, match=r"jigasi\.room_header"):
        load_config(None, jigasi={"room_header": "X Room"})


def test_caller_numbers_are_masked_to_country_and_last_two_digits() -> None:
    assert mask_number("+4930123456712") == "+49 \u2022\u2022\u2022 \u2022\u2022\u2022\u2022 12"
    assert mask_number("+12025550143") == "+1 \u2022\u2022\u2022 \u2022\u2022\u2022\u2022 43"
    assert mask_number("") == "anonymous"
    assert "123456" not in mask_number("0301234567")


async def test_log_records_of_a_call_carry_its_id(make_rig, caplog) -> None:
    import logging

    from dialbridge.calls.call import CallIdFilter

    rig = await make_rig(ivr={"pin_timeout": 0.3, "max_no_input": 1})
    handler_filter = CallIdFilter()
    caplog.handler.addFilter(handler_filter)
    caplog.set_level(logging.INFO)
    try:
        phone = await rig.phone.dial(DID, caller="+4930222222228")
        await phone.answered()
        await phone.ended(5)
        await wait_for(lambda: not rig.engine.calls, 5)
    finally:
        caplog.handler.removeFilter(handler_filter)
    (cdr,) = await rig.cdrs()
    mine = [r for r in caplog.records if r.name == "dialbridge.calls"]
    assert mine and all(r.call_id == cdr.call_id for r in mine)
    assert all(r.getMessage().startswith(f"[{cdr.call_id}]") for r in mine)
