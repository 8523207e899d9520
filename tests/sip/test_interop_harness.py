"""The peer harness, tested peer against peer before any dialbridge code is involved: every
scenario file in peers/scenarios runs against SIPp playing the other side (peers/scenarios/mirror),
and baresip registers to a SIPp registrar. If one of these fails, the harness is at fault, not the
stack."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.sip.peers.baresip import Baresip, BaresipAccount, BaresipConfig
from tests.sip.peers.capture import LoopbackCapture, sip_messages
from tests.sip.peers.certs import make_self_signed_certificate
from tests.sip.peers.linphonec import Linphonec, LinphonecConfig
from tests.sip.peers.ports import LOOPBACK, free_port
from tests.sip.peers.sipp import SCENARIO_DIR, Sipp, SippResult, scenario_path
from tests.sip.peers.tls_tunnel import TlsClientTunnel, TlsServerTunnel

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


@pytest.mark.slow
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


@pytest.mark.slow
async def test_uac_call_scenario_against_builtin_uas(sipp_binary, peer_dir):
    server, client = pair(peer_dir, "uas", scenario_path("uac_call"), service="echo")
    _, client_result = await run_pair(server, client)
    assert client_result.returncode == 0, client_result.explain()
    assert client_result.flow() == [
        ">INVITE", "<180 INVITE", "<200 INVITE", ">ACK", ">BYE", "<200 BYE",
    ]  # fmt: skip


@pytest.mark.slow
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
        ">INFO", "<200 INFO", "<INFO",
        ">INFO", "<200 INFO", ">200 INFO",
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


async def test_baresip_registers_with_digest_to_a_sipp_registrar(
    sipp_binary, baresip_binary, peer_dir
):
    registrar_port = free_port()
    registrar = Sipp(MIRROR / "registrar.xml", peer_dir, registrar_port, timeout=15)
    config = BaresipConfig(
        peer_dir / "baresip",
        accounts=[BaresipAccount("alice", f"{LOOPBACK}:{registrar_port}", "secret", regint=600)],
    )
    await registrar.start()
    await registrar.ensure_listening()
    phone = Baresip(config, lifetime=20)
    await phone.start()
    try:
        line = await phone.wait_registered("alice", timeout=10)
        assert "[1 binding]" in line
    finally:
        await phone.quit()  # un-REGISTERs: the mirror's last step
    registrar_result = await registrar.wait()
    assert registrar_result.returncode == 0, registrar_result.explain()
    sent = [m for m in phone.messages() if m.direction == "sent"]
    assert [m.method for m in sent] == ["REGISTER", "REGISTER", "REGISTER"]
    assert all(
        m.src == (LOOPBACK, config.sip_port) and m.dst == (LOOPBACK, registrar_port) for m in sent
    )
    assert 'username="alice"' in (sent[1].header("Authorization") or "")
    assert [m.status for m in phone.messages() if m.direction == "received"] == [401, 200, 200]


async def test_sipp_calls_baresip_which_answers_automatically(
    sipp_binary, baresip_binary, peer_dir
):
    config = BaresipConfig(
        peer_dir / "baresip", accounts=[BaresipAccount("bob", f"{LOOPBACK}:9", "x", regint=0)]
    )
    phone = Baresip(config, lifetime=20)
    await phone.start()
    try:
        await phone.wait_ready()
        caller = Sipp(
            scenario_path("uac_call"),
            peer_dir,
            free_port(),
            remote=f"{LOOPBACK}:{config.sip_port}",
            service="bob",
            timeout=10,
        )
        result = await caller.run()
    finally:
        await phone.quit()
    assert result.returncode == 0, result.explain() + phone.output[-3000:]
    assert result.flow()[0] == ">INVITE" and result.flow()[-4:] == [
        "<200 INVITE",
        ">ACK",
        ">BYE",
        "<200 BYE",
    ]
    answer = result.received(status=200)[0]
    assert "PCMU/8000" in answer.body
    received_invite = [m for m in phone.messages() if m.method == "INVITE"]
    assert len(received_invite) == 1 and received_invite[0].src == (LOOPBACK, caller.local_port)


async def test_linphonec_registers_with_digest_to_a_sipp_registrar(
    sipp_binary, linphonec_binary, peer_dir
):
    registrar_port = free_port()
    registrar = Sipp(MIRROR / "registrar.xml", peer_dir, registrar_port, timeout=20)
    await registrar.start()
    await registrar.ensure_listening()
    phone = Linphonec(LinphonecConfig(peer_dir / "linphonec"))
    await phone.start()
    try:
        await phone.register("alice", f"{LOOPBACK}:{registrar_port}", "secret")
    finally:
        await phone.quit()  # un-REGISTERs: the mirror's last step
    registrar_result = await registrar.wait()
    assert registrar_result.returncode == 0, registrar_result.explain()
    exchanged = [(m.describe(), m.src[1] if m.src else None) for m in phone.messages()]
    assert exchanged[:4] == [
        (">REGISTER", phone.config.sip_port),
        ("<401 REGISTER", registrar_port),
        (">REGISTER", phone.config.sip_port),
        ("<200 REGISTER", registrar_port),
    ]


async def test_sipp_calls_linphonec_which_answers_automatically(
    sipp_binary, linphonec_binary, peer_dir
):
    phone = Linphonec(LinphonecConfig(peer_dir / "linphonec"))
    await phone.start()
    try:
        await phone.wait_for(r"linphonec> ", 10)
        caller = Sipp(
            scenario_path("uac_call"), peer_dir, free_port(),
            remote=f"{LOOPBACK}:{phone.config.sip_port}", service="carol", timeout=10,
        )  # fmt: skip
        result = await caller.run()
    finally:
        await phone.quit()
    assert result.returncode == 0, result.explain() + phone.output[-3000:]
    assert result.flow()[-4:] == ["<200 INVITE", ">ACK", ">BYE", "<200 BYE"]
    invites = [m for m in phone.messages() if m.method == "INVITE"]
    assert len(invites) == 1 and invites[0].src == (LOOPBACK, caller.local_port)


async def test_sipp_over_tls_through_socat_tunnels(
    sipp_binary, socat_binary, tls_certificate, peer_dir
):
    # SIPp uac --TCP--> client tunnel --TLS--> server tunnel --TCP--> SIPp uas: both tunnels in
    # one path, so the TLS leg in the middle is the only way through.
    server_port = free_port()
    server_tunnel = TlsServerTunnel(server_port, tls_certificate.combined, peer_dir)
    await server_tunnel.start()
    client_tunnel = TlsClientTunnel(server_tunnel.listen_port, tls_certificate.cert, peer_dir)
    await client_tunnel.start()
    server = Sipp(scenario_path("uas_answer"), peer_dir, server_port, transport="tcp", timeout=10)
    client = Sipp(
        "uac", peer_dir, free_port(), remote=f"{LOOPBACK}:{client_tunnel.listen_port}", transport="tcp", timeout=10,
    )  # fmt: skip
    try:
        server_result, client_result = await run_pair(server, client)
    finally:
        await client_tunnel.stop()
        await server_tunnel.stop()
    assert client_result.returncode == 0, client_result.explain() + client_tunnel.output
    assert server_result.flow() == [
        "<INVITE",
        ">100 INVITE",
        ">180 INVITE",
        ">200 INVITE",
        "<ACK",
        "<BYE",
        ">200 BYE",
    ]
    assert "SSL connection using" in client_tunnel.output


async def test_tls_client_tunnel_refuses_a_certificate_it_does_not_trust(
    sipp_binary, socat_binary, tls_certificate, peer_dir, tmp_path
):
    other = make_self_signed_certificate(tmp_path / "other")
    server_port = free_port()
    server_tunnel = TlsServerTunnel(server_port, other.combined, peer_dir)
    await server_tunnel.start()
    client_tunnel = TlsClientTunnel(server_tunnel.listen_port, tls_certificate.cert, peer_dir)
    await client_tunnel.start()
    client = Sipp(
        "uac",
        peer_dir,
        free_port(),
        remote=f"{LOOPBACK}:{client_tunnel.listen_port}",
        transport="tcp",
        timeout=3,
    )
    try:
        result = await client.run()
    finally:
        await client_tunnel.stop()
        await server_tunnel.stop()
    assert result.returncode != 0
    assert result.successful_calls == 0
    assert "certificate verify failed" in client_tunnel.output


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_loopback_capture_sees_sipp_messages_with_their_ports(
    sipp_binary, peer_dir, transport
):
    server, client = pair(peer_dir, "uas", "uac", transport=transport)
    capture = LoopbackCapture([server.local_port], peer_dir)
    await capture.start()
    try:
        await run_pair(server, client)
    finally:
        packets = await capture.finish()
    messages = sip_messages(packets)
    invites = [m for m in messages if m.method == "INVITE"]
    assert len(invites) == 1
    assert invites[0].dst == (LOOPBACK, server.local_port)
    assert invites[0].transport == transport.upper()
    oks = [m for m in messages if m.status == 200 and m.cseq_method == "INVITE"]
    assert oks and all(m.src == (LOOPBACK, server.local_port) for m in oks)


@pytest.mark.slow
async def test_private_netns_has_only_loopback_and_sipp_runs_inside_it(sipp_binary, peer_dir):
    from tests.sip.peers.netns import private_netns_argv

    probe = await asyncio.create_subprocess_exec(
        *private_netns_argv(["ip", "-o", "link"]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(probe.communicate(), 10)
    if probe.returncode != 0 and b"Operation not permitted" in out:
        pytest.skip("unshare -n needs root or user namespaces here")
    interfaces = [line.split(":")[1].strip() for line in out.decode().splitlines()]
    assert interfaces == ["lo"]
    # a SIPp pair entirely inside one namespace: uas in the background, uac in front
    port_a, port_b = free_port(), free_port()
    script = (
        f"sipp -sn uas -i 127.0.0.1 -p {port_a} -m 1 -nostdin -timeout 10s >/dev/null 2>&1 & "
        f"sleep 0.3; sipp -sn uac 127.0.0.1:{port_a} -i 127.0.0.1 -p {port_b} -m 1 -nostdin "
        f"-timeout 10s >/dev/null 2>&1; echo uac=$?; wait; echo uas=$?"
    )
    proc = await asyncio.create_subprocess_exec(
        *private_netns_argv(["sh", "-c", script]), stdout=asyncio.subprocess.PIPE, cwd=peer_dir
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert out.decode().split() == ["uac=0", "uas=0"]
