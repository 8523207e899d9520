"""baresip and linphonec register to dialbridge with digest, and dialbridge calls them back on the
registrar's flow (issue 3 acceptance; Jigasi accepts requests only from the address its REGISTER
went to: jigasi-protocol.md §1.1).

linphonec meets a registrar configured for SHA-256, then MD5 (RFC 8760 §2.4; the default is MD5 alone) and
answers SHA-256. baresip 1.0 cannot: its libre gives up on the whole 401 when any challenge in it
is SHA-256, whether listed first or after MD5 ("reg: ...: Register: Function not implemented",
measured both ways), so its registrar challenges with MD5 only. Jigasi is MD5-only as well
(jigasi-protocol.md §3): see docs/sip-interop.md. "Leaves from the registrar's socket" is
checked twice: by the phone's own log of where the INVITE came from, and by a tcpdump capture on
lo filtered to dialbridge's port.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.sip.conftest import SDP_OFFER, DialbridgeUnderTest
from tests.sip.peers.baresip import Baresip, BaresipAccount, BaresipConfig
from tests.sip.peers.capture import LoopbackCapture, sip_messages
from tests.sip.peers.linphonec import Linphonec, LinphonecConfig
from tests.sip.peers.ports import LOOPBACK

pytestmark = pytest.mark.peers


async def call_registered(dialbridge, user: str):
    """INVITE the registered contact of `user` on its registration flow; returns (statuses, flow)."""
    reachable = dialbridge.lookup(user)
    assert len(reachable) == 1, reachable
    target = reachable[0]
    assert target.flow is not None
    call = await dialbridge.ua.invite(target.uri, sdp=SDP_OFFER, via_flow=target.flow)
    statuses = [r.status async for r in call.responses()]
    handle = await asyncio.wait_for(call.answered(), 10)
    bye = await handle.bye()
    assert bye is not None and bye.status == 200
    return statuses, target.flow, handle


@contextlib.asynccontextmanager
async def registrar(tls_certificate, algorithms: tuple[str, ...]):
    server = DialbridgeUnderTest(tls_certificate, digest_algorithms=algorithms)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def dialbridge_md5(tls_certificate):
    async with registrar(tls_certificate, ("MD5",)) as server:
        yield server


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_baresip_registers_and_is_called_back_from_the_registrar_socket(
    dialbridge_md5, baresip_binary, tcpdump_binary, peer_dir, tls_certificate, transport
):
    dialbridge = dialbridge_md5
    server_port = dialbridge.tls_port if transport == "tls" else dialbridge.port
    config = BaresipConfig(
        peer_dir / "baresip",
        accounts=[
            BaresipAccount("bob", dialbridge.address(transport), "hunter2", transport=transport)
        ],
        ca_file=tls_certificate.cert if transport == "tls" else None,
    )
    capture = LoopbackCapture([server_port], peer_dir)
    await capture.start()
    phone = Baresip(config, lifetime=30)
    await phone.start()
    try:
        line = await phone.wait_registered("bob", timeout=10)
        statuses, flow, handle = await call_registered(dialbridge, "bob")
    finally:
        await phone.quit()
        packets = await capture.finish()
    assert "200 OK" in line and "[1 binding]" in line
    assert statuses[-1] == 200
    assert b"PCMU/8000" in (handle.remote_sdp or b"")

    trace = phone.messages()
    kind = transport.upper()
    registers = [m for m in trace if m.method == "REGISTER"]
    assert registers[0].transport == kind
    register_from, register_to = registers[0].src, registers[0].dst
    assert register_to == (LOOPBACK, server_port)
    # digest: the first REGISTER is challenged, the second authenticated
    challenge = [m for m in trace if m.status == 401][0]
    algorithms = [
        a.split("algorithm=")[1].split(",")[0] for a in challenge.header_values("WWW-Authenticate")
    ]
    assert algorithms == ["MD5"]
    authorization = registers[1].header("Authorization") or ""
    assert 'username="bob"' in authorization
    assert "SHA-256" not in authorization
    # The INVITE reaches baresip from the registrar's address, onto the address it registered from
    invites = [m for m in trace if m.method == "INVITE" and m.direction == "received"]
    assert len(invites) == 1
    assert invites[0].src == (LOOPBACK, server_port)
    assert invites[0].dst == register_from
    assert flow.transport == transport and flow.local[1] == server_port

    # Independently of baresip: what crossed lo
    if transport == "tls":
        # encrypted: only check that every TCP segment stays on the REGISTER's connection
        pairs = {(p.src, p.dst) for p in packets if p.payload}
        assert pairs <= {(register_from, register_to), (register_to, register_from)}
    else:
        wire = sip_messages(packets)
        wire_invites = [m for m in wire if m.method == "INVITE"]
        assert len(wire_invites) == 1
        assert wire_invites[0].src == (LOOPBACK, server_port)
        assert wire_invites[0].dst == register_from
        answered = [m for m in wire if m.status == 200 and m.cseq_method == "INVITE"]
        assert answered and answered[0].dst == (LOOPBACK, server_port)


@pytest.fixture
async def dialbridge_sha256(tls_certificate):
    """The registrar offering SHA-256 first, then MD5 (RFC 8760 §2.4); the default is MD5 alone."""
    async with registrar(tls_certificate, ("SHA-256", "MD5")) as server:
        yield server


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_linphonec_registers_and_is_called_back_from_the_registrar_socket(
    dialbridge_sha256, linphonec_binary, tcpdump_binary, peer_dir, tls_certificate, transport
):
    dialbridge = dialbridge_sha256
    server_port = dialbridge.tls_port if transport == "tls" else dialbridge.port
    config = LinphonecConfig(
        peer_dir / "linphonec",
        transport=transport,
        root_ca=tls_certificate.cert if transport == "tls" else None,
    )
    phone = Linphonec(config)
    capture = LoopbackCapture([server_port], peer_dir)
    await capture.start()
    await phone.start()
    try:
        # TLS: by name, since linphonec's TLS library ignores IP subjectAltNames ("<unsupported>",
        # then CN-mismatch for 127.0.0.1, measured); the certificate's CN is localhost.
        registrar = (
            f"localhost:{server_port}" if transport == "tls" else dialbridge.address(transport)
        )
        await phone.register("carol", registrar, "s3cr3t")
        statuses, flow, handle = await call_registered(dialbridge, "carol")
    finally:
        await phone.quit()
        packets = await capture.finish()
    assert statuses[-1] == 200
    assert b"m=audio" in (handle.remote_sdp or b"")
    assert flow.transport == transport and flow.local == (LOOPBACK, server_port)
    trace = phone.messages()
    registers = [m for m in trace if m.method == "REGISTER"]
    assert registers[0].transport == transport.upper()
    assert registers[0].dst == (LOOPBACK, server_port)
    authorization = registers[1].header("Authorization") or ""
    assert 'username="carol"' in authorization
    assert "algorithm=SHA-256" in authorization.replace('"', "")  # the first challenge, RFC 8760
    invites = [m for m in trace if m.method == "INVITE" and m.direction == "received"]
    assert len(invites) == 1
    assert invites[0].src == (LOOPBACK, server_port)

    if transport == "tls":
        pairs = {(p.src, p.dst) for p in packets if p.payload}
        assert len(pairs) == 2  # one connection, both directions: the INVITE rode the REGISTER's
        return
    wire = sip_messages(packets)
    wire_invites = [m for m in wire if m.method == "INVITE"]
    wire_registers = [m for m in wire if m.method == "REGISTER"]
    assert len(wire_invites) == 1
    assert wire_invites[0].src == (LOOPBACK, server_port)
    assert wire_invites[0].dst == wire_registers[0].src
    answered = [m for m in wire if m.status == 200 and m.cseq_method == "INVITE"]
    assert answered and answered[0].dst == (LOOPBACK, server_port)
