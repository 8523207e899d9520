"""Edge security against a real peer (issue 3 §10): SIPp as a scanner, as an unknown source, and
as a digest user calling from an address that is no trunk. 127.0.0.2 (also on lo) plays the
outside source; the test dialbridge's only trunk is 127.0.0.1/32."""

from __future__ import annotations

import pytest

from tests.sip.conftest import DialbridgeUnderTest
from tests.sip.peers.ports import LOOPBACK, free_port
from tests.sip.peers.sipp import Sipp, scenario_path

pytestmark = pytest.mark.peers

OUTSIDE = "127.0.0.2"


@pytest.fixture
async def dialbridge(tls_certificate):
    server = DialbridgeUnderTest(tls_certificate, digest_algorithms=("MD5",))  # SIPp: MD5 only
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def sipp(dialbridge, peer_dir, scenario: str, transport: str, **kw) -> Sipp:
    return Sipp(
        scenario_path(scenario),
        peer_dir,
        free_port(),
        remote=dialbridge.address(transport),
        transport=transport,  # type: ignore[arg-type]
        timeout=10,
        **kw,
    )


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_scanner_user_agent_is_dropped_without_an_answer(
    dialbridge, peer_dir, sipp_binary, transport
):
    # from 127.0.0.1, a trunk address: the scanner rule comes first (security.py rule 1)
    result = await sipp(dialbridge, peer_dir, "options_scanner", transport, service="100").run()
    assert result.returncode == 0, result.explain()
    assert result.received() == []
    sent = result.sent(method="OPTIONS")
    # over UDP SIPp keeps retransmitting into the silence (at 0, 0.5 and 1.5 s)
    assert len(sent) == (3 if transport == "udp" else 1), result.flow()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_options_from_an_unknown_source_is_challenged(
    dialbridge, peer_dir, sipp_binary, transport
):
    result = await sipp(
        dialbridge, peer_dir, "options_unknown_source", transport, service="x", local_ip=OUTSIDE
    ).run()
    assert result.returncode == 0, result.explain()
    assert result.flow() in ([">OPTIONS", "<401 OPTIONS"], [">OPTIONS", "<403 OPTIONS"])
    assert result.flow() != [">OPTIONS", "<200 OPTIONS"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_digest_user_may_call_from_an_unknown_source(
    dialbridge, peer_dir, sipp_binary, transport
):
    result = await sipp(
        dialbridge,
        peer_dir,
        "uac_call_digest",
        transport,
        service="echo",
        auth=("alice", "secret"),
        auth_uri=f"echo@{dialbridge.address(transport)}",
        local_ip=OUTSIDE,
    ).run()
    assert result.returncode == 0, result.explain()
    flow = [m for m in result.flow() if m not in ("<100 INVITE", "<180 INVITE")]
    assert flow[0] == ">INVITE" and flow[1] in ("<401 INVITE", "<407 INVITE")
    assert flow[2:] == [">ACK", ">INVITE", "<200 INVITE", ">ACK", ">BYE", "<200 BYE"]
    assert len(dialbridge.incoming) == 1
    call = dialbridge.incoming[0]
    assert call.auth_user == "alice" and call.trunk is None
    assert call.flow.remote[0] == OUTSIDE


async def test_invite_from_an_unknown_source_without_credentials_is_not_answered_200(
    dialbridge, peer_dir, sipp_binary
):
    result = await sipp(
        dialbridge, peer_dir, "uac_call", "udp", service="echo", local_ip=OUTSIDE
    ).run()
    assert result.returncode != 0
    assert result.received(status=200) == []
    assert {m.status for m in result.received()} & {401, 403, 407}
    assert dialbridge.incoming == []
    assert LOOPBACK not in {m.header("Via") for m in result.sent()}  # sent from 127.0.0.2 indeed


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_malformed_request_gets_400_and_the_next_one_200(
    dialbridge, peer_dir, sipp_binary, transport
):
    result = await sipp(
        dialbridge, peer_dir, "malformed_then_options", transport, service="x"
    ).run()
    assert result.returncode == 0, result.explain()
    assert result.flow() == [">OPTIONS", "<400 OPTIONS", ">OPTIONS", "<200 OPTIONS"]
    refusal = result.received(status=400)[0]
    assert refusal.header("CSeq") == "1 OPTIONS"
    assert refusal.header("Call-ID") == result.sent()[0].header("Call-ID")
