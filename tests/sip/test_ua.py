"""The async UA over real loopback sockets: two dialbridge UAs talk UDP, TCP and TLS.

Every wait is bounded by asyncio.wait_for; nothing sleeps to let time pass except the scanner
test, which must observe silence.
"""

import asyncio
import socket
import ssl

import pytest

from dialbridge.sip.message import parse_message
from dialbridge.sip.security import Trunk
from dialbridge.sip.ua import (
    AckReceived,
    ByeReceived,
    CallFailed,
    Credentials,
    DialogEnded,
    InfoReceived,
    OfferReceived,
    UserAgent,
    UserAgentConfig,
)

LO = "127.0.0.1"
SDP_OFFER = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
SDP_ANSWER = b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
WAIT = 5.0


def config(kind="udp", **kw):
    listeners = {"udp": [], "tcp": [], "tls": []}
    listeners[kind] = [(LO, 0)]
    if kind != "udp":
        listeners["udp"] = [(LO, 0)]
    return UserAgentConfig(udp=listeners["udp"], tcp=listeners["tcp"], tls=listeners["tls"], **kw)


async def wait(awaitable):
    return await asyncio.wait_for(awaitable, WAIT)


class Answerer:
    """A router that answers every INVITE with SDP_ANSWER (or offers it when offerless)."""

    def __init__(self, ring=True):
        self.calls = asyncio.Queue()
        self.ring = ring

    async def __call__(self, call):
        await self.calls.put(call)
        if self.ring:
            await call.ring()
        await call.answer(SDP_ANSWER)


@pytest.fixture
async def registrar():
    """A UA that is a registrar with user jigasi/secret, trusting nothing by address."""
    ua = UserAgent(config(domain="dialbridge.test", users={"jigasi": "secret"}))
    await ua.start()
    yield ua
    await ua.close()


async def start(ua):
    await ua.start()
    return ua


def registrar_uri(ua, kind):
    host, port = ua.local_addresses[kind]
    return f"sip:{host}:{port}" + ("" if kind == "udp" else f";transport={kind}")


async def register_jigasi(jigasi, registrar_ua, kind):
    response = await wait(
        jigasi.register(
            registrar_uri(registrar_ua, kind),
            "sip:jigasi@dialbridge.test",
            credentials=Credentials("jigasi", "secret"),
        )
    )
    assert response.status == 200
    return response


@pytest.mark.parametrize("kind", ["udp", "tcp"])
async def test_invite_to_registered_ua_leaves_from_its_register_flow(kind):
    server = await start(
        UserAgent(config(kind, domain="dialbridge.test", users={"jigasi": "secret"}))
    )
    answerer = Answerer()
    jigasi = await start(UserAgent(config(kind), router=answerer))
    try:
        await register_jigasi(jigasi, server, kind)
        (reachable,) = server.location.lookup("jigasi", __import__("time").time())
        call = await server.invite(
            reachable, sdp=SDP_OFFER,
            headers={"X-Room-Name": "room@conference.meet.example", "Jitsi-Conference-Room-Pass": "pw"},
        )  # fmt: skip
        statuses = [r.status async for r in call.responses()]
        assert statuses[-1] == 200 and 180 in statuses
        dialog = await wait(call.answered())
        incoming = await wait(answerer.calls.get())
        # jigasi-protocol.md §1.1: the INVITE came from the registrar's own address/connection.
        assert incoming.flow.remote[1] == server.local_addresses[kind][1] or kind != "udp"
        if kind == "tcp":
            assert incoming.flow.connection is not None
            assert reachable.flow.connection is not None
        assert incoming.flow.transport == kind
        assert incoming.to_addr.uri.user == "jigasi" and incoming.request.uri == reachable.uri
        # Jigasi looks headers up by exact spelling (jigasi-protocol.md §1.2).
        raw = incoming.request.to_bytes()
        assert b"\r\nX-Room-Name: room@conference.meet.example\r\n" in raw
        assert b"\r\nJitsi-Conference-Room-Pass: pw\r\n" in raw
        assert dialog.remote_sdp == SDP_ANSWER
        # BYE from the server ends both sides.
        bye = await wait(dialog.bye())
        assert bye.status == 200
        assert await wait(dialog.terminated) == "bye"
        assert await wait(incoming.dialog.terminated) == "remote bye"
    finally:
        await jigasi.close()
        await server.close()


async def test_register_without_credentials_fails_and_registers_nothing(registrar):
    client = await start(UserAgent(config()))
    try:
        response = await wait(
            client.register(
                registrar_uri(registrar, "udp"), "sip:jigasi@dialbridge.test", credentials=None
            )
        )
        assert response.status == 401
        assert registrar.location.lookup("jigasi", 0.0) == []
        wrong = await wait(
            client.register(
                registrar_uri(registrar, "udp"), "sip:jigasi@dialbridge.test",
                credentials=Credentials("jigasi", "wrong"),
            )
        )  # fmt: skip
        assert wrong.status == 401
    finally:
        await client.close()


async def test_overlapping_info_in_both_directions_complete():
    answerer = Answerer(ring=False)
    server = await start(UserAgent(config(trunks=[Trunk.from_cidrs("lo", ["127.0.0.0/8"])])))
    peer = await start(
        UserAgent(config(trunks=[Trunk.from_cidrs("lo", ["127.0.0.0/8"])]), router=answerer)
    )
    try:
        host, port = peer.local_addresses["udp"]
        call = await server.invite(f"sip:jigasi@{host}:{port}", sdp=SDP_OFFER)
        ours = await wait(call.answered())
        theirs = (await wait(answerer.calls.get())).dialog
        await wait(theirs.acked)
        a, b = await wait(
            asyncio.gather(
                ours.info(
                    "application/json", '{"type":"muteRequest","id":"1","data":{"audio":true}}'
                ),
                theirs.info("application/json", '{"t":11}'),
            )
        )
        assert (a.status, b.status) == (200, 200)
        got_ours = await wait(anext(_info_events(theirs)))
        got_theirs = await wait(anext(_info_events(ours)))
        assert b"muteRequest" in got_ours.body and got_ours.content_type == "application/json"
        assert got_theirs.body == b'{"t":11}'
    finally:
        await peer.close()
        await server.close()


async def _info_events(handle):
    async for event in handle.events():
        if isinstance(event, InfoReceived):
            yield event


async def test_cancel_before_answer_gives_487_and_tells_the_callee():
    rang = asyncio.Event()

    async def ring_only(call):
        await call.ring()
        rang.set()
        await call.cancelled

    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust)))
    peer = await start(UserAgent(config(trunks=trust), router=ring_only))
    try:
        host, port = peer.local_addresses["udp"]
        call = await server.invite(f"sip:x@{host}:{port}", sdp=SDP_OFFER)
        await wait(rang.wait())
        await call.cancel()
        with pytest.raises(CallFailed) as failed:
            await wait(call.answered())
        assert failed.value.response.status == 487
    finally:
        await peer.close()
        await server.close()


async def test_offerless_invite_gets_offer_in_200_and_answer_in_ack():
    answerer = Answerer(ring=False)
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trust and "udp", trunks=trust)))
    peer = await start(UserAgent(config(trunks=trust), router=answerer))
    try:
        host, port = peer.local_addresses["udp"]
        call = await server.invite(f"sip:x@{host}:{port}")  # no SDP
        final = await wait(call.final)
        assert final.status == 200 and final.body == SDP_ANSWER  # their offer
        await call.ack(SDP_OFFER)  # our answer
        theirs = (await wait(answerer.calls.get())).dialog
        ack = await wait(theirs.acked)
        assert ack.body == SDP_OFFER
        assert theirs.remote_sdp == SDP_OFFER
        events = [e async for e in _until(theirs.events(), AckReceived)]
        assert events[-1].sdp == SDP_OFFER
    finally:
        await peer.close()
        await server.close()


async def _until(iterator, kind):
    async for event in iterator:
        yield event
        if isinstance(event, kind):
            return


async def test_reinvite_is_answered_with_on_offer_sdp():
    answerer = Answerer(ring=False)
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust)))
    peer = await start(UserAgent(config(trunks=trust), router=answerer))
    try:
        host, port = peer.local_addresses["udp"]
        call = await server.invite(f"sip:x@{host}:{port}", sdp=SDP_OFFER)
        ours = await wait(call.answered())
        theirs = (await wait(answerer.calls.get())).dialog
        theirs.on_offer = lambda request: b"v=0\r\ns=renegotiated\r\n"
        response = await wait(ours.reinvite(SDP_OFFER))
        assert response.status == 200
        assert ours.remote_sdp == b"v=0\r\ns=renegotiated\r\n"
        events = [e async for e in _until(theirs.events(), OfferReceived)]
        assert events[-1].answer == b"v=0\r\ns=renegotiated\r\n"
    finally:
        await peer.close()
        await server.close()


async def test_remote_bye_is_reported_as_event_and_terminated():
    answerer = Answerer(ring=False)
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust)))
    peer = await start(UserAgent(config(trunks=trust), router=answerer))
    try:
        host, port = peer.local_addresses["udp"]
        call = await server.invite(f"sip:x@{host}:{port}", sdp=SDP_OFFER)
        ours = await wait(call.answered())
        theirs = (await wait(answerer.calls.get())).dialog
        await wait(theirs.bye())
        kinds = [type(e) async for e in ours.events()]
        assert kinds[-2:] == [ByeReceived, DialogEnded]
        assert await wait(ours.terminated) == "remote bye"
    finally:
        await peer.close()
        await server.close()


async def test_invite_from_unknown_source_is_challenged_and_passes_with_credentials(registrar):
    answerer = Answerer(ring=False)
    registrar.router = answerer
    client = await start(UserAgent(config()))
    try:
        host, port = registrar.local_addresses["udp"]
        refused = await client.invite(f"sip:100@{host}:{port}", sdp=SDP_OFFER)
        assert (await wait(refused.final)).status == 401
        call = await client.invite(
            f"sip:100@{host}:{port}", sdp=SDP_OFFER, credentials=Credentials("jigasi", "secret")
        )
        statuses = [r.status async for r in call.responses()]
        assert statuses[-1] == 200 and 401 not in statuses  # the challenge was answered inside
        assert call.request.headers.get("Authorization", "").startswith("Digest ")
        dialog = await wait(call.answered())
        incoming = await wait(answerer.calls.get())
        assert incoming.auth_user == "jigasi"
        await wait(dialog.bye())
    finally:
        await client.close()


async def test_unknown_source_without_digest_gets_403():
    server = await start(UserAgent(config()))  # no users, no trunks
    client = await start(UserAgent(config()))
    try:
        host, port = server.local_addresses["udp"]
        call = await client.invite(f"sip:100@{host}:{port}", sdp=SDP_OFFER)
        assert (await wait(call.final)).status == 403
    finally:
        await client.close()
        await server.close()


async def test_options_outside_dialog_is_answered_200():
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust)))
    client = await start(UserAgent(config()))
    try:
        host, port = server.local_addresses["udp"]
        response = await wait(client.request("OPTIONS", f"sip:{host}:{port}"))
        assert response.status == 200
        assert "INFO" in response.headers.get_all("Allow")
    finally:
        await client.close()
        await server.close()


async def test_invite_from_registered_jigasi_is_accepted_and_names_its_aor(registrar):
    answerer = Answerer(ring=False)
    registrar.router = answerer
    jigasi = await start(UserAgent(config()))
    try:
        await register_jigasi(jigasi, registrar, "udp")
        host, port = registrar.local_addresses["udp"]
        call = await jigasi.invite(
            f"sip:+4930123456@{host}:{port}", sdp=SDP_OFFER,
            headers={"Jitsi-Conference-Room": "room@conference.meet", "JigasiCallDirection": "out"},
        )  # fmt: skip
        dialog = await wait(call.answered())  # no challenge: it came on the registered flow
        incoming = await wait(answerer.calls.get())
        assert incoming.registered and incoming.registered_aor == "sip:jigasi@dialbridge.test"
        assert incoming.request_uri.user == "+4930123456"
        assert incoming.request.headers.get("JigasiCallDirection") == "out"
        await wait(dialog.bye())
    finally:
        await jigasi.close()


async def test_registered_ua_options_keepalive_is_answered(registrar):
    jigasi = await start(UserAgent(config()))
    try:
        await register_jigasi(jigasi, registrar, "udp")
        host, port = registrar.local_addresses["udp"]
        response = await wait(jigasi.request("OPTIONS", f"sip:dialbridge.test@{host}:{port}"))
        assert response.status == 200  # a known source: no challenge
    finally:
        await jigasi.close()


def _udp_exchange(port, data, timeout=1.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind((LO, 0))
        sock.sendto(data, (LO, port))
        try:
            return sock.recvfrom(65535)[0]
        except TimeoutError:
            return None


async def test_malformed_request_gets_400_and_server_keeps_working(registrar):
    port = registrar.local_addresses["udp"][1]
    bad = (
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad;rport\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )  # no Call-ID
    reply = await asyncio.to_thread(_udp_exchange, port, bad)
    assert reply is not None and reply.startswith(b"SIP/2.0 400 ")  # no Call-ID to copy
    garbage = await asyncio.to_thread(_udp_exchange, port, b"\x16\x03\x01 not sip at all", 0.3)
    assert garbage is None
    # Still alive.
    good = bad.replace(b"CSeq:", b"Call-ID: ok\r\nCSeq:").replace(b"z9hG4bKbad", b"z9hG4bKgood")
    reply = await asyncio.to_thread(_udp_exchange, port, good)
    assert reply is not None and parse_message(reply).status in (401, 403)


async def test_scanner_gets_no_answer():
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust)))
    try:
        port = server.local_addresses["udp"][1]
        probe = (
            b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKs;rport\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:100@y>\r\nCall-ID: s\r\nCSeq: 1 OPTIONS\r\n"
            b"User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
        )
        assert await asyncio.to_thread(_udp_exchange, port, probe, 0.3) is None
        normal = probe.replace(b"friendly-scanner", b"Jigasi1.1").replace(b"bKs", b"bKn")
        reply = await asyncio.to_thread(_udp_exchange, port, normal)
        assert reply is not None and parse_message(reply).status == 200
        stats = server.stats()
        assert stats["requests_in"] == 2 and stats["requests_dropped"] == 1
    finally:
        await server.close()


async def test_tcp_crlf_keepalive_gets_pong(registrar):
    tcp_ua = await start(UserAgent(config("tcp")))
    try:
        host, port = tcp_ua.local_addresses["tcp"]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\r\n\r\n")
        await writer.drain()
        assert await wait(reader.readexactly(2)) == b"\r\n"
        writer.close()
    finally:
        await tcp_ua.close()


async def test_tls_register_and_invite_over_the_same_connection(tls_certificate):
    server = await start(
        UserAgent(
            config("tls", domain="dialbridge.test", users={"jigasi": "secret"},
                   tls_cert=str(tls_certificate.cert), tls_key=str(tls_certificate.key))
        )
    )  # fmt: skip
    client_ssl = ssl.create_default_context(cafile=str(tls_certificate.cert))
    answerer = Answerer(ring=False)
    jigasi = await start(UserAgent(config("udp", client_ssl=client_ssl), router=answerer))
    try:
        await register_jigasi(jigasi, server, "tls")
        (reachable,) = server.location.lookup("jigasi", __import__("time").time())
        assert reachable.flow.transport == "tls"
        call = await server.invite(reachable.uri, sdp=SDP_OFFER, via_flow=reachable.flow)
        dialog = await wait(call.answered())
        incoming = await wait(answerer.calls.get())
        assert incoming.flow.transport == "tls"
        # The INVITE arrived on the very connection jigasi opened for its REGISTER.
        assert (
            incoming.flow.connection
            is jigasi.transports._connections[("tls", incoming.flow.remote)]
        )
        await wait(dialog.bye())
    finally:
        await jigasi.close()
        await server.close()


async def test_router_exception_gives_500():
    async def broken(call):
        raise RuntimeError("bug")

    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust), router=broken))
    client = await start(UserAgent(config()))
    try:
        host, port = server.local_addresses["udp"]
        call = await client.invite(f"sip:1@{host}:{port}", sdp=SDP_OFFER)
        assert (await wait(call.final)).status == 500
    finally:
        await client.close()
        await server.close()


async def test_unsupported_require_gets_420():
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust), router=Answerer()))
    client = await start(UserAgent(config()))
    try:
        host, port = server.local_addresses["udp"]
        call = await client.invite(
            f"sip:1@{host}:{port}", sdp=SDP_OFFER, headers={"Require": "100rel"}
        )
        final = await wait(call.final)
        assert final.status == 420
        assert final.headers.get("Unsupported") == "100rel"
    finally:
        await client.close()
        await server.close()


async def test_keep_registered_refreshes_with_same_call_id_and_unregisters():
    server = await start(
        UserAgent(config(domain="dialbridge.test", users={"trunk": "pw"}, min_expires=1))
    )
    client = await start(UserAgent(config()))
    seen = []
    server.location.on_update = lambda aor, bindings: seen.append([b.call_id for b in bindings])
    try:
        registration = client.keep_registered(
            registrar_uri(server, "udp"), "sip:trunk@dialbridge.test",
            credentials=Credentials("trunk", "pw"), expires=1,
        )  # fmt: skip
        await wait(registration.registered.wait())
        assert registration.granted == 1
        # The refresh comes after max(1 s, 0.8 * granted): wait for the second REGISTER.
        for _ in range(40):
            if len(seen) >= 2:
                break
            await asyncio.sleep(0.1)
        assert len(seen) >= 2 and seen[0] == seen[1] == [registration.call_id]
        response = await wait(registration.stop())
        assert response.status == 200
        assert server.location.lookup("trunk", __import__("time").time()) == []
    finally:
        await client.close()
        await server.close()


def test_call_with_info_and_bye_works_on_uvloop():
    uvloop = pytest.importorskip("uvloop")

    async def scenario():
        answerer = Answerer()
        trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
        async with (
            UserAgent(config("tcp", trunks=trust)) as server,
            UserAgent(config("tcp", trunks=trust), router=answerer) as peer,
        ):
            assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
            host, port = peer.local_addresses["tcp"]
            call = await server.invite(f"sip:x@{host}:{port};transport=tcp", sdp=SDP_OFFER)
            dialog = await wait(call.answered())
            assert (await wait(dialog.info("application/json", "{}"))).status == 200
            assert (await wait(dialog.bye())).status == 200
            return call.flow.transport

    assert uvloop.run(scenario()) == "tcp"


async def test_2xx_crossing_our_cancel_is_hung_up_at_once():
    answerer = Answerer(ring=False)
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust)))
    peer = await start(UserAgent(config(trunks=trust), router=answerer))
    try:
        host, port = peer.local_addresses["udp"]
        call = await server.invite(f"sip:x@{host}:{port}", sdp=SDP_OFFER)
        await call.cancel()  # before any provisional: the CANCEL waits (§9.1), the 200 wins
        final = await wait(call.final)
        assert final.status == 200
        theirs = (await wait(answerer.calls.get())).dialog
        assert await wait(theirs.terminated) == "remote bye"
        assert await wait(call.dialog.terminated) == "bye"
    finally:
        await peer.close()
        await server.close()


async def test_udp_binding_survives_a_registrar_restart(tmp_path):
    from dialbridge.sip.location import JsonFileBindingStore
    from tests.sip.peers.ports import free_port

    port = free_port()
    store_path = tmp_path / "bindings.json"

    def registrar_config():
        return UserAgentConfig(
            udp=[(LO, port)], domain="dialbridge.test", users={"jigasi": "secret"},
            binding_store=JsonFileBindingStore(store_path),
        )  # fmt: skip

    answerer = Answerer(ring=False)
    jigasi = await start(UserAgent(config(), router=answerer))
    try:
        first = await start(UserAgent(registrar_config()))
        await register_jigasi(jigasi, first, "udp")
        await first.close()
        second = await start(UserAgent(registrar_config()))
        try:
            (reachable,) = second.location.lookup("jigasi", __import__("time").time())
            assert reachable.flow is not None and reachable.flow.local[1] == port
            call = await second.invite(reachable.uri, sdp=SDP_OFFER, via_flow=reachable.flow)
            dialog = await wait(call.answered())
            incoming = await wait(answerer.calls.get())
            assert incoming.flow.remote == (LO, port)  # still from the registrar's port
            await wait(dialog.bye())
        finally:
            await second.close()
    finally:
        await jigasi.close()


async def test_every_in_dialog_request_from_the_peer_gets_a_final_answer_at_once():
    answerer = Answerer(ring=False)
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust)))
    peer = await start(UserAgent(config(trunks=trust), router=answerer))
    try:
        host, port = peer.local_addresses["udp"]
        call = await server.invite(f"sip:x@{host}:{port}", sdp=SDP_OFFER)
        ours = await wait(call.answered())
        ours.on_info = lambda request: 415 if b"bad" in request.body else None
        theirs = (await wait(answerer.calls.get())).dialog
        await wait(theirs.acked)
        results = {}
        for method, body, ctype in [
            ("INFO", b"", None),                       # no Content-Type (Jigasi heartbeat case)
            ("INFO", b'{"t":11}', "application/json"),
            ("INFO", b"bad", "application/json"),
            ("OPTIONS", b"", None),
            ("UPDATE", b"", None),
            ("UPDATE", SDP_ANSWER, "application/sdp"),
            ("NOTIFY", b"", None),
            ("MESSAGE", b"hi", "text/plain"),
            ("REFER", b"", None),
        ]:  # fmt: skip
            response = await wait(theirs.request(method, body=body, content_type=ctype))
            results[(method, body)] = response.status
        assert results[("INFO", b"")] == 200
        assert results[("INFO", b'{"t":11}')] == 200
        assert results[("INFO", b"bad")] == 415  # on_info decided
        assert results[("OPTIONS", b"")] == 200
        assert results[("UPDATE", b"")] == 200 and results[("UPDATE", SDP_ANSWER)] == 200
        assert results[("NOTIFY", b"")] == 405 and results[("REFER", b"")] == 405
        assert all(status >= 200 and status != 408 for status in results.values())
        assert not ours.is_terminated
    finally:
        await peer.close()
        await server.close()


async def test_close_hangs_up_every_live_dialog():
    answerer = Answerer(ring=False)
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust)))
    peer = await start(UserAgent(config(trunks=trust), router=answerer))
    try:
        host, port = peer.local_addresses["udp"]
        calls = [await server.invite(f"sip:x{i}@{host}:{port}", sdp=SDP_OFFER) for i in range(5)]
        for call in calls:
            await wait(call.answered())
        theirs = [(await wait(answerer.calls.get())).dialog for _ in calls]
        await wait(server.close())
        reasons = await wait(asyncio.gather(*(d.terminated for d in theirs)))
        assert reasons == ["remote bye"] * 5
    finally:
        await peer.close()


async def test_register_without_accounts_is_forbidden():
    server = await start(UserAgent(config()))
    client = await start(UserAgent(config()))
    try:
        response = await wait(
            client.register(registrar_uri(server, "udp"), "sip:x@dialbridge.test", credentials=None)
        )
        assert response.status == 403
    finally:
        await client.close()
        await server.close()


async def test_password_guessing_gets_the_source_banned(registrar):
    registrar.policy.failure_limit = 3
    client = await start(UserAgent(config()))
    try:
        for _ in range(3):
            response = await wait(
                client.register(
                    registrar_uri(registrar, "udp"), "sip:jigasi@dialbridge.test",
                    credentials=Credentials("jigasi", "guess"),
                )
            )  # fmt: skip
            assert response.status == 401
        port = registrar.local_addresses["udp"][1]
        probe = (
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKban;rport\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: ban\r\nCSeq: 1 OPTIONS\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        assert await asyncio.to_thread(_udp_exchange, port, probe, 0.3) is None  # banned: silence
        stats = registrar.stats()
        assert stats["auth_failures"] == 3 and stats["sources_banned"] == 1
    finally:
        await client.close()


async def test_invite_through_an_outbound_proxy_carries_a_loose_route():
    answerer = Answerer(ring=False)
    trust = [Trunk.from_cidrs("lo", ["127.0.0.0/8"])]
    server = await start(UserAgent(config(trunks=trust)))
    proxy = await start(
        UserAgent(config(trunks=trust), router=answerer)
    )  # stands where the proxy is
    try:
        host, port = proxy.local_addresses["udp"]
        call = await server.invite(
            "sip:+4930123@carrier.invalid", sdp=SDP_OFFER, proxy=f"sip:{host}:{port}"
        )
        dialog = await wait(call.answered())
        incoming = await wait(answerer.calls.get())
        assert incoming.request.uri == "sip:+4930123@carrier.invalid"
        assert incoming.request.headers.get_all("Route") == [f"<sip:{host}:{port};lr>"]
        await wait(dialog.bye())
    finally:
        await proxy.close()
        await server.close()


async def test_challenged_in_dialog_request_is_answered_with_the_call_credentials(registrar):
    answerer = Answerer(ring=False)
    registrar.router = answerer
    client = await start(UserAgent(config()))
    try:
        host, port = registrar.local_addresses["udp"]
        call = await client.invite(
            f"sip:100@{host}:{port}", sdp=SDP_OFFER, credentials=Credentials("jigasi", "secret")
        )
        dialog = await wait(call.answered())
        theirs = (await wait(answerer.calls.get())).dialog
        seen = []

        def challenge_unless_authorized(request):
            # A trunk that challenges in-dialog requests (some do on BYE/INFO).
            seen.append(request.headers.get("Authorization"))
            if request.headers.get("Authorization"):
                return 200
            outcome = registrar.authenticator.authenticate(request, __import__("time").time())
            return (401, outcome.headers, b"")

        theirs.on_info = challenge_unless_authorized
        response = await wait(dialog.info("application/json", "{}"))
        assert response.status == 200
        assert seen[0] is None and seen[1].startswith("Digest ")
    finally:
        await client.close()
