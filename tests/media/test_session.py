"""Media sessions over real loopback UDP sockets, driven through the control seam.

Every engine test runs twice (the ``engine_native`` fixture of conftest.py): on the pure-Python
path and on the C data plane (``MediaEngine(native=True)``: RTP sockets drained by C, bridged
directions ticked by ``_dataplane.tick_plain``).
"""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from dialbridge.media.codecs import create_decoder, create_encoder
from dialbridge.media.control import (
    MediaCommandError,
    MediaControl,
    MediaEngine,
    MediaResumed,
    MediaTimeout,
    PlaybackFinished,
    RemoteAddressLatched,
    RtcpStats,
    RtpParameters,
)
from dialbridge.media.rtcp import SenderReport, parse_rtcp
from dialbridge.media.rtp import RtpPacket

LOCAL = "127.0.0.1"
UNUSED = (LOCAL, 9)  # "private address from the SDP": nothing listens there (discard port)


class Peer:
    """A UDP endpoint on loopback playing the remote party: sends RTP on a fixed 20 ms
    schedule, records every datagram it gets."""

    def __init__(self, rtcp: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCAL, 0))
        self.sock.setblocking(False)
        self.addr = self.sock.getsockname()
        self.rtcp_sock = None
        if rtcp:  # RTCP on port + 1: find a free even/odd pair
            self.sock.close()
            for port in range(41000, 42000, 2):
                a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    a.bind((LOCAL, port))
                    b.bind((LOCAL, port + 1))
                except OSError:
                    a.close()
                    b.close()
                    continue
                self.sock, self.rtcp_sock = a, b
                a.setblocking(False)
                b.setblocking(False)
                self.addr = a.getsockname()
                break
        self.received: list[bytes] = []
        self.rtcp_received: list[bytes] = []
        self.seq = 0

    def drain(self) -> None:
        for sock, into in ((self.sock, self.received), (self.rtcp_sock, self.rtcp_received)):
            while sock is not None:
                try:
                    into.append(sock.recv(4096))
                except BlockingIOError:
                    break

    def send(
        self,
        dest: tuple[str, int],
        payload: bytes,
        pt: int = 0,
        ssrc: int = 0xABC,
        ts_step: int = 160,
        extensions: dict[int, bytes] | None = None,
    ) -> None:
        pkt = RtpPacket(
            pt, self.seq & 0xFFFF, self.seq * ts_step, ssrc, payload, extensions=extensions or {}
        )
        self.sock.sendto(pkt.serialize(), dest)
        self.seq += 1

    def close(self) -> None:
        self.sock.close()
        if self.rtcp_sock is not None:
            self.rtcp_sock.close()


async def run_for(seconds: float, *peers: Peer, each_tick=None) -> None:
    """Let the engine run for ``seconds`` of wall time, calling ``each_tick(n)`` every 20 ms
    on an absolute schedule (bounded loop)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(int(seconds / 0.02)):
        if each_tick is not None:
            each_tick(n)
        await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))
        for p in peers:
            p.drain()


@pytest.fixture
async def media(engine_native: bool):
    engine = MediaEngine(port_low=32000, port_high=32999, rtcp_interval=0.5, native=engine_native)
    assert (engine.native is not None) == engine_native
    control = MediaControl(engine)
    control.engine = engine
    events: list = []
    control.subscribe(events.append)
    control.events_seen = events
    yield control
    await engine.close()


def pcmu_tone(freq: float = 440.0, amplitude: float = 8000.0):
    enc = create_encoder("PCMU")
    t = np.arange(160) / 8000

    def frame(n: int) -> bytes:
        x = amplitude * np.sin(2 * np.pi * freq * (t + n * 0.02))
        return enc.encode(x.astype(np.int16))

    return frame


async def test_latches_to_where_rtp_comes_from_when_the_sdp_address_is_private(media):
    peer = Peer()
    leg = await media.create_session("trunk")
    await media.set_remote("trunk", RtpParameters("PCMU", 0, remote_rtp=UNUSED))
    tone = pcmu_tone()
    await run_for(1.0, peer, each_tick=lambda n: peer.send((LOCAL, leg.rtp_port), tone(n)))
    latched = [e for e in media.events_seen if isinstance(e, RemoteAddressLatched)]
    assert latched == [RemoteAddressLatched("trunk", peer.addr, rtcp=False)]
    assert len(peer.received) >= 35  # ~50 per second once latched
    peer.close()


async def test_a_foreign_source_cannot_take_over_a_latched_stream(media):
    peer, intruder = Peer(), Peer()
    leg = await media.create_session("trunk")
    await media.set_remote("trunk", RtpParameters("PCMU", 0, remote_rtp=UNUSED))
    tone = pcmu_tone()
    dest = (LOCAL, leg.rtp_port)

    def both(n: int) -> None:
        peer.send(dest, tone(n))
        if n > 10:
            intruder.send(dest, tone(n), ssrc=0xBAD)

    await run_for(1.0, peer, intruder, each_tick=both)
    assert intruder.received == []
    assert len(peer.received) >= 35
    assert [e.address for e in media.events_seen if isinstance(e, RemoteAddressLatched)] == [
        peer.addr
    ]
    peer.close()
    intruder.close()


async def test_sends_continuously_with_levels_while_muted_and_during_prompts(media):
    trunk_peer, jigasi_peer = Peer(), Peer()
    trunk = await media.create_session("trunk")
    await media.create_session("jigasi")
    await media.set_remote("trunk", RtpParameters("PCMU", 0, remote_rtp=trunk_peer.addr))
    await media.set_remote(
        "jigasi", RtpParameters("opus", 111, audio_level_id=1, remote_rtp=jigasi_peer.addr)
    )
    await media.bridge("trunk", "jigasi")
    await media.mute("trunk")
    tone = pcmu_tone(amplitude=12000)
    send = lambda n: trunk_peer.send((LOCAL, trunk.rtp_port), tone(n))  # noqa: E731
    await run_for(1.0, trunk_peer, jigasi_peer, each_tick=send)
    muted = [RtpPacket.parse(d) for d in jigasi_peer.received]
    assert len(muted) >= 35  # never silent towards Jigasi (50/s; slack for a busy CI box)
    assert all(1 in p.extensions and p.extensions[1][0] & 0x7F != 127 for p in muted)
    assert all(p.extensions[1][0] & 0x7F >= 100 for p in muted[5:])  # comfort silence
    # Unmute: the tone reaches Jigasi, tagged as loud voice.
    await media.mute("trunk", False)
    jigasi_peer.received.clear()
    await run_for(0.6, trunk_peer, jigasi_peer, each_tick=send)
    live = [RtpPacket.parse(d) for d in jigasi_peer.received][10:]
    assert live and all(p.extensions[1][0] & 0x80 and p.extensions[1][0] & 0x7F < 30 for p in live)
    # A prompt on the Jigasi leg replaces the bridged audio; packets keep flowing.
    await media.play("jigasi", "beep1", tone="beep")
    jigasi_peer.received.clear()
    await run_for(0.5, trunk_peer, jigasi_peer, each_tick=send)
    assert len(jigasi_peer.received) >= 15
    done = [e for e in media.events_seen if isinstance(e, PlaybackFinished)]
    assert done == [PlaybackFinished("beep1", True, "jigasi")]
    trunk_peer.close()
    jigasi_peer.close()


async def test_bridged_audio_is_transcoded_pcmu_to_opus_and_back(media):
    trunk_peer, jigasi_peer = Peer(), Peer()
    trunk = await media.create_session("trunk")
    jig = await media.create_session("jigasi")
    await media.set_remote("trunk", RtpParameters("PCMU", 0, remote_rtp=trunk_peer.addr))
    await media.set_remote(
        "jigasi", RtpParameters("opus", 111, audio_level_id=1, remote_rtp=jigasi_peer.addr)
    )
    await media.bridge("trunk", "jigasi")
    tone = pcmu_tone(600.0)
    opus = create_encoder("opus")
    t = np.arange(160) / 8000

    def both(n: int) -> None:
        trunk_peer.send((LOCAL, trunk.rtp_port), tone(n))
        x = (8000 * np.sin(2 * np.pi * 1000 * (t + n * 0.02))).astype(np.int16)
        jigasi_peer.send(
            (LOCAL, jig.rtp_port), opus.encode(x), pt=111, ts_step=960, extensions={1: b"\x8a"}
        )

    await run_for(1.2, trunk_peer, jigasi_peer, each_tick=both)
    dec = create_decoder("opus")
    to_jigasi = np.concatenate(
        [dec.decode(RtpPacket.parse(d).payload) for d in jigasi_peer.received[-25:]]
    )
    ulaw = create_decoder("PCMU")
    to_trunk = np.concatenate(
        [ulaw.decode(RtpPacket.parse(d).payload) for d in trunk_peer.received[-25:]]
    )

    def peak(x: np.ndarray) -> float:
        return float(np.fft.rfftfreq(len(x), 1 / 8000)[np.argmax(np.abs(np.fft.rfft(x)))])

    assert abs(peak(to_jigasi) - 600) < 20
    assert abs(peak(to_trunk) - 1000) < 20
    trunk_peer.close()
    jigasi_peer.close()


async def test_media_timeout_fires_once_and_resumes_when_rtp_returns(media):
    peer = Peer()
    leg = await media.create_session("trunk", media_timeout=0.5)
    await media.set_remote("trunk", RtpParameters("PCMU", 0, remote_rtp=peer.addr))
    tone = pcmu_tone()
    dest = (LOCAL, leg.rtp_port)
    await run_for(0.2, peer, each_tick=lambda n: peer.send(dest, tone(n)))
    assert not any(isinstance(e, MediaTimeout) for e in media.events_seen)
    await run_for(1.2, peer)
    timeouts = [e for e in media.events_seen if isinstance(e, MediaTimeout)]
    assert len(timeouts) == 1 and timeouts[0].silent_for >= 0.5
    assert len(peer.received) >= 30  # we kept sending meanwhile
    await run_for(0.2, peer, each_tick=lambda n: peer.send(dest, tone(n)))
    assert any(isinstance(e, MediaResumed) for e in media.events_seen)
    peer.close()


async def test_hole_punch_comfort_noise_and_garbage_are_tolerated(media):
    peer = Peer()
    leg = await media.create_session("jigasi", media_timeout=0.4)
    await media.set_remote(
        "jigasi", RtpParameters("opus", 111, audio_level_id=1, remote_rtp=UNUSED)
    )
    dest = (LOCAL, leg.rtp_port)

    def junk(n: int) -> None:
        if n < 3:
            peer.send(dest, b"", pt=111, ts_step=960)  # Jigasi hole punch: header only
        elif n % 10 == 0:
            peer.send(dest, b"\x00", pt=13, ts_step=960)  # CN keep-alive, not negotiated
        else:
            peer.sock.sendto(bytes([n % 256]) * (n % 40), dest)  # garbage

    await run_for(1.0, peer, each_tick=junk)
    assert any(isinstance(e, RemoteAddressLatched) for e in media.events_seen)
    assert not any(isinstance(e, MediaTimeout) for e in media.events_seen)
    assert len(peer.received) >= 30
    peer.close()


async def test_rtcp_sender_reports_go_to_rtp_port_plus_one_and_give_stats(media):
    peer = Peer(rtcp=True)
    leg = await media.create_session("trunk")
    assert leg.rtp_port % 2 == 0 and leg.rtcp_port == leg.rtp_port + 1
    await media.set_remote("trunk", RtpParameters("PCMU", 0, remote_rtp=peer.addr))
    tone = pcmu_tone()
    await run_for(1.6, peer, each_tick=lambda n: peer.send((LOCAL, leg.rtp_port), tone(n)))
    reports = [p for d in peer.rtcp_received for p in parse_rtcp(d)]
    srs = [p for p in reports if isinstance(p, SenderReport)]
    assert srs and srs[-1].packet_count >= 20
    assert srs[-1].reports and srs[-1].reports[0].ssrc == 0xABC
    stats = [e for e in media.events_seen if isinstance(e, RtcpStats)]
    assert stats and stats[-1].packets_received >= 20 and stats[-1].packets_lost == 0
    peer.close()


async def test_commands_on_unknown_sessions_are_local_errors(media):
    with pytest.raises(MediaCommandError):
        await media.play("nope", tone="beep")
    await media.create_session("x")
    with pytest.raises(MediaCommandError):
        await media.bridge("x", "nope")
    with pytest.raises(MediaCommandError):
        await media.play("x", tone="no-such-tone")


async def test_runs_under_uvloop(engine_native):
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> int:
        engine = MediaEngine(port_low=33000, port_high=33099, native=engine_native)
        control = MediaControl(engine)
        peer = Peer()
        await control.create_session("a")
        await control.set_remote("a", RtpParameters("PCMA", 8, remote_rtp=peer.addr))
        await run_for(0.4, peer)
        await engine.close()
        peer.close()
        return len(peer.received)

    loop = uvloop.new_event_loop()
    try:
        got = await asyncio.get_running_loop().run_in_executor(
            None, loop.run_until_complete, scenario()
        )
    finally:
        loop.close()
    assert got >= 15


def test_rtcp_statistics_count_lost_packets_per_source(engine_native):
    from dialbridge.media.session import MediaSession

    leg = MediaSession(
        "t",
        RtpParameters("PCMU", 0, remote_rtp=(LOCAL, 4000)),
        now=0.0,
        rtcp_interval=100.0,
        native=engine_native,
    )
    enc = create_encoder("PCMU")
    silence = enc.encode(np.zeros(160, np.int16))
    for k in range(100):
        if k % 20 == 7:  # 5 lost
            continue
        seq = (0xFFE0 + k) & 0xFFFF  # crosses the 16-bit wrap
        leg.receive_rtp(
            RtpPacket(0, seq, k * 160, 0x55, silence).serialize(), (LOCAL, 4000), k * 0.02
        )
    leg.close(2.0)
    stats = [e for e in leg.pop_events() if isinstance(e, RtcpStats)]
    assert stats[-1].packets_received == 95 and stats[-1].packets_lost == 5
    report = parse_rtcp(leg.rtcp_outbox[-1][0])
    block = report[0].reports[0]
    assert block.ssrc == 0x55 and block.cumulative_lost == 5
    assert block.highest_sequence == 0x10000 + ((0xFFE0 + 99) & 0xFFFF)


async def test_prompt_queued_before_the_answer_plays_once_media_starts(media):
    peer = Peer()
    await media.create_session("ivr")
    pid = await media.play("ivr", tone="beep")  # the SDP answer has not arrived yet
    await run_for(0.2, peer)
    assert peer.received == []  # no remote description: nothing is sent
    await media.set_remote("ivr", RtpParameters("PCMA", 8, remote_rtp=peer.addr))
    await run_for(0.5, peer)
    assert [e.playback_id for e in media.events_seen if isinstance(e, PlaybackFinished)] == [pid]
    assert len(peer.received) >= 15
    peer.close()


async def test_a_new_remote_description_switches_codec_mid_call(media):
    peer = Peer()
    await media.create_session("leg")
    await media.set_remote("leg", RtpParameters("PCMU", 0, remote_rtp=peer.addr))
    await run_for(0.3, peer)
    await media.set_remote(
        "leg", RtpParameters("opus", 111, audio_level_id=1, remote_rtp=peer.addr)
    )
    peer.received.clear()
    await run_for(0.3, peer)
    pts = {RtpPacket.parse(d).payload_type for d in peer.received}
    ssrcs = {RtpPacket.parse(d).ssrc for d in peer.received}
    assert pts == {111} and len(ssrcs) == 1
    peer.close()


async def test_a_bridged_call_runs_on_the_c_data_plane_when_it_is_built(media, engine_native):
    """The native parameter really exercises C: the playouts are ``_dataplane.Playout``, the
    RTP sockets are read by ``drain`` (the audio never reaches ``receive_rtp``) and the bridged
    directions are sent by ``tick_plain`` (``send_audio`` is not called once settled)."""
    engine = media.engine
    trunk_peer, jigasi_peer = Peer(), Peer()
    trunk = await media.create_session("trunk")
    jig = await media.create_session("jigasi")
    await media.set_remote(
        "trunk",
        RtpParameters("PCMU", 0, telephone_event_pt=101, remote_rtp=trunk_peer.addr, max_streams=1),
    )
    await media.set_remote(
        "jigasi", RtpParameters("opus", 111, audio_level_id=1, remote_rtp=jigasi_peer.addr)
    )
    await media.bridge("trunk", "jigasi")
    cores = {sid: engine.legs[sid].core for sid in ("trunk", "jigasi")}
    calls = {"send_audio": 0, "receive_rtp": 0}
    for core in cores.values():
        for name in calls:
            original = getattr(core, name)

            def counted(*args, _original=original, _name=name):
                calls[_name] += 1
                return _original(*args)

            setattr(core, name, counted)
    tone = pcmu_tone(600.0)
    opus = create_encoder("opus")
    t = np.arange(160) / 8000

    def both(n: int) -> None:
        trunk_peer.send((LOCAL, trunk.rtp_port), tone(n))
        x = (8000 * np.sin(2 * np.pi * 1000 * (t + n * 0.02))).astype(np.int16)
        jigasi_peer.send(
            (LOCAL, jig.rtp_port), opus.encode(x), pt=111, ts_step=960, extensions={1: b"\x8a"}
        )

    await run_for(0.4, trunk_peer, jigasi_peer, each_tick=both)
    settled = dict(calls)
    await run_for(0.8, trunk_peer, jigasi_peer, each_tick=both)
    steady = {name: calls[name] - settled[name] for name in calls}
    assert len(jigasi_peer.received) >= 40 and len(trunk_peer.received) >= 40
    if engine_native:
        dataplane = engine.native
        assert all(type(core.mixer) is dataplane.Playout for core in cores.values())
        assert all(core.rtp_fd == engine.legs[sid].rtp.fd for sid, core in cores.items())
        assert steady == {"send_audio": 0, "receive_rtp": 0}
    else:
        assert all(core.rtp_fd is None for core in cores.values())
        assert steady["send_audio"] >= 60  # (RtpEndpoint binds receive_rtp: not counted)
    trunk_peer.close()
    jigasi_peer.close()


@pytest.mark.parametrize(
    "datagram",
    [
        # X bit, profile 0xBEDE, length 0 words, no payload: 16 bytes in all
        bytes.fromhex("906f0001000003c000000005") + b"\xbe\xde\x00\x00",
        # one CSRC, two-byte-form block (0x1000) holding element id 1 with length 0
        bytes.fromhex("916f0002000007800000000500000077") + b"\x10\x00\x00\x01\x01\x00\x00\x00xx",
    ],
    ids=["empty-one-byte-block", "empty-two-byte-level-element"],
)
def test_malformed_header_extensions_are_dropped_not_raised(datagram, engine_native):
    from dialbridge.media.session import MediaSession

    sdp = (LOCAL, 4000)
    leg = MediaSession(
        "jigasi",
        RtpParameters("opus", 111, audio_level_id=1, remote_rtp=sdp),
        now=0.0,
        native=engine_native,
    )
    # From the SDP address the first packet latches at once and goes on to be parsed (on the
    # C data plane too: drain() hands packets of a leg that is not latched yet to Python).
    leg.receive_rtp(datagram, sdp, 0.0)
    assert leg.latched == sdp


async def test_rtcp_alone_on_the_rtp_port_does_not_keep_the_media_alive(media, engine_native):
    """rtcp-mux: the peer stops sending RTP but keeps sending RTCP on the same port (a held
    call, a dead media path): "no RTP for N s" must still be reported."""
    from dialbridge.media.rtcp import ReceiverReport, serialize_rtcp

    peer = Peer()
    leg = await media.create_session("trunk", media_timeout=0.5)
    await media.set_remote(
        "trunk",
        RtpParameters(
            "PCMU", 0, telephone_event_pt=101, remote_rtp=peer.addr, rtcp_mux=True, max_streams=1
        ),
    )
    tone = pcmu_tone()
    dest = (LOCAL, leg.rtp_port)
    await run_for(0.3, peer, each_tick=lambda n: peer.send(dest, tone(n)))
    report = serialize_rtcp([ReceiverReport(0xABC, ())])
    await run_for(1.2, peer, each_tick=lambda n: peer.sock.sendto(report, dest))
    timeouts = [e for e in media.events_seen if isinstance(e, MediaTimeout)]
    assert len(timeouts) == 1
    peer.close()
