"""The peer harness, tested peer against peer before any dialbridge code is involved: every
scenario file in peers/scenarios runs against SIPp playing the other side (peers/scenarios/mirror),
and baresip registers to a SIPp registrar. If one of these fails, the harness is at fault, not the
stack."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.sip.peers.ports import LOOPBACK, free_port
from tests.sip.peers.sipp import SCENARIO_DIR, Sipp, SippResult, scenario_path

pytestmark = pytest.mark.peers

MIRROR = SCENARIO_DIR / "mirror"


async def run_pair(server: Sipp, client: Sipp) -> tuple[SippResult, SippResult]:
    await server.start()
    try:
        await server.ensure_listening()
        client_result = await client.run()
    finally:
        server_result = await server.wait()
    return server_result, client_result


def pair(peer_dir: Path, server_scenario, client_scenario, *, transport="udp", **client_kw):
    server_port, client_port = free_port(), free_port()
    server = Sipp(server_scenario, peer_dir, server_port, transport=transport, timeout=10)
    client = Sipp(
        client_scenario,
        peer_dir,
        client_port,
        remote=f"{LOOPBACK}:{server_port}",
        transport=transport,
        timeout=10,
        **client_kw,
    )
    return server, client


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_builtin_uac_completes_one_call_against_builtin_uas(sipp_binary, peer_dir, transport):
    server, client = pair(peer_dir, "uas", "uac", transport=transport)
    server_result, client_result = await run_pair(server, client)
    assert client_result.returncode == 0, client_result.explain()
    assert client_result.successful_calls == 1
    assert client_result.flow() == [
        ">INVITE", "<180 INVITE", "<200 INVITE", ">ACK", ">BYE", "<200 BYE",
    ]  # fmt: skip
    assert {m.transport for m in client_result.messages} == {transport.upper()}
    # The built-in uas lingers 4 s in timewait; over TCP the uac closing the connection during
    # that time counts as a failed call on the uas side, and only that.
    if transport == "tcp":
        assert server_result.failure_counts() in ({}, {"FailedTcpClosed": 1})
    else:
        assert server_result.returncode == 0, server_result.explain()
    assert server_result.flow() == [
        "<INVITE",
        ">180 INVITE",
        ">200 INVITE",
        "<ACK",
        "<BYE",
        ">200 BYE",
    ]


async def test_register_digest_scenario_authenticates_against_a_digest_registrar(
    sipp_binary, peer_dir
):
    server, client = pair(
        peer_dir, MIRROR / "registrar.xml", scenario_path("register_digest"),
        service="alice", auth=("alice", "secret"),
    )  # fmt: skip
    server_result, client_result = await run_pair(server, client)
    assert client_result.returncode == 0, client_result.explain()
    assert client_result.flow() == [
        ">REGISTER", "<401 REGISTER", ">REGISTER", "<200 REGISTER", ">REGISTER", "<200 REGISTER",
    ]  # fmt: skip
    authenticated = client_result.sent(method="REGISTER")[1]
    authorization = authenticated.header("Authorization")
    assert authorization is not None and authorization.startswith("Digest ")
    assert 'username="alice"' in authorization and 'realm="mirror"' in authorization
    assert server_result.returncode == 0, server_result.explain()


async def test_register_bad_password_scenario_sees_the_refusal(sipp_binary, peer_dir):
    server, client = pair(
        peer_dir, MIRROR / "registrar.xml", scenario_path("register_bad_password"),
        service="alice", auth=("alice", "wrong"),
    )  # fmt: skip
    _, client_result = await run_pair(server, client)
    assert client_result.returncode == 0, client_result.explain()
    assert client_result.flow() == [">REGISTER", "<401 REGISTER", ">REGISTER", "<403 REGISTER"]


async def test_options_scenario_checks_allow(sipp_binary, peer_dir):
    server, client = pair(peer_dir, MIRROR / "options.xml", scenario_path("options"), service="x")
    _, client_result = await run_pair(server, client)
    assert client_result.returncode == 0, client_result.explain()
    assert client_result.flow() == [">OPTIONS", "<200 OPTIONS"]


async def test_uac_call_scenario_against_builtin_uas(sipp_binary, peer_dir):
    server, client = pair(peer_dir, "uas", scenario_path("uac_call"), service="echo")
    _, client_result = await run_pair(server, client)
    assert client_result.returncode == 0, client_result.explain()
    assert client_result.flow() == [
        ">INVITE", "<180 INVITE", "<200 INVITE", ">ACK", ">BYE", "<200 BYE",
    ]  # fmt: skip


async def test_drop_first_ack_scenario_waits_for_the_retransmitted_200(sipp_binary, peer_dir):
    server, client = pair(peer_dir, "uas", scenario_path("uac_drop_first_ack"), service="echo")
    server_result, client_result = await run_pair(server, client)
    assert client_result.returncode == 0, client_result.explain()
    # The built-in uas retransmits its 200 after T1 = 500 ms (RFC 3261 §13.3.1.4); SIPp's
    # 1 s without ACK lets exactly one retransmission through (the next is due at 1.5 s).
    assert client_result.flow() == [
        ">INVITE", "<180 INVITE", "<200 INVITE", "<200 INVITE", ">ACK", ">BYE", "<200 BYE",
    ]  # fmt: skip
    first, second = client_result.received(status=200)[:2]
    assert 0.4 <= second.at - first.at <= 0.9
    assert server_result.retransmissions >= 1


async def test_cancel_scenario_against_a_ringing_uas(sipp_binary, peer_dir):
    server, client = pair(
        peer_dir, MIRROR / "cancel.xml", scenario_path("uac_cancel"), service="ring"
    )
    server_result, client_result = await run_pair(server, client)
    assert client_result.returncode == 0, client_result.explain()
    assert client_result.flow() == [
        ">INVITE", "<180 INVITE", ">CANCEL", "<200 CANCEL", "<487 INVITE", ">ACK",
    ]  # fmt: skip
    invite, cancel, ack = (client_result.sent(method=m)[0] for m in ("INVITE", "CANCEL", "ACK"))
    assert invite.header("Via") == cancel.header("Via") == ack.header("Via")
    assert server_result.returncode == 0, server_result.explain()


async def test_info_overlap_scenario_against_its_mirror(sipp_binary, peer_dir):
    server, client = pair(
        peer_dir, MIRROR / "info_overlap.xml", scenario_path("info_overlap"), service="x"
    )
    server_result, client_result = await run_pair(server, client)
    assert client_result.returncode == 0, client_result.explain()
    assert client_result.flow() == [
        ">INVITE", "<200 INVITE", ">ACK",
        ">INFO", "<INFO", "<200 INFO", ">200 INFO",
        "<INFO", ">INFO", "<200 INFO", ">200 INFO",
        ">BYE", "<200 BYE",
    ]  # fmt: skip
    assert server_result.returncode == 0, server_result.explain()


@pytest.mark.parametrize("scenario", ["uas_answer", "uas_answer_then_bye"])
async def test_uas_scenarios_answer_a_sipp_caller(sipp_binary, peer_dir, scenario):
    client_scenario = "uac" if scenario == "uas_answer" else MIRROR / "uac_accepts_bye.xml"
    server, client = pair(peer_dir, scenario_path(scenario), client_scenario, service="x")
    server_result, client_result = await run_pair(server, client)
    assert server_result.returncode == 0, server_result.explain()
    assert client_result.returncode == 0, client_result.explain()
    expected_end = ["<BYE", ">200 BYE"] if scenario == "uas_answer" else [">BYE", "<200 BYE"]
    assert server_result.flow() == [
        "<INVITE", ">100 INVITE", ">180 INVITE", ">200 INVITE", "<ACK", *expected_end,
    ]  # fmt: skip


async def test_concurrent_sipp_runs_are_bounded_by_timeout(sipp_binary, peer_dir):
    # Nobody listens on this port: SIPp must give up on its own within its -timeout.
    lonely = Sipp("uac", peer_dir, free_port(), remote=f"{LOOPBACK}:{free_port()}", timeout=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await lonely.run()
    assert result.returncode != 0
    assert not result.timed_out
    assert loop.time() - started < 8
