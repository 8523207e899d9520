"""The C data plane (``dialbridge.media._dataplane``) end to end, on real loopback sockets.

What the native path must guarantee: it is really there when CI says it must be; a bridged
call sounds the same as on the Python path (frequencies, RFC 6464 levels, N loudest, PESQ);
sequence numbers and timestamps stay continuous when a direction moves between C and Python
(mute, prompts, RFC 4733); and nothing a peer sends can stop the engine's tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import struct

import numpy as np
import pytest
from scipy.signal import correlate

from dialbridge.media import dataplane as dataplane_loader
from dialbridge.media.codecs import create_decoder, create_encoder
from dialbridge.media.control import MediaControl, MediaEngine, RtpParameters
from dialbridge.media.levels import AudioLevelMeter
from dialbridge.media.rtp import RtpPacket
from tests.media.conftest import REQUIRE_NATIVE_ENV, native_dataplane_or_skip
from tests.media.test_session import LOCAL, Peer, pcmu_tone, run_for

TRUNK_TE = 101


def trunk_params(peer: Peer) -> RtpParameters:
    # A real trunk offers telephone-event, so the in-band detector stays off ("auto").
    return RtpParameters(
        "PCMU", 0, telephone_event_pt=TRUNK_TE, remote_rtp=peer.addr, max_streams=1
    )


def jigasi_params(peer: Peer) -> RtpParameters:
    return RtpParameters("opus", 111, audio_level_id=1, remote_rtp=peer.addr, max_streams=3)


class Call:
    """A trunk leg (PCMU) bridged to a Jigasi leg (Opus, levels, 3 SSRCs) on one engine, a
    peer socket for each, and counters of the Python send path (C sends without it)."""

    def __init__(self, control: MediaControl, engine: MediaEngine) -> None:
        self.control = control
        self.engine = engine
        self.trunk_peer, self.jigasi_peer = Peer(), Peer()
        self.python_sends = {"trunk": 0, "jigasi": 0}

    async def start(self) -> Call:
        c = self.control
        self.trunk = await c.create_session("trunk")
        self.jigasi = await c.create_session("jigasi")
        await c.set_remote("trunk", trunk_params(self.trunk_peer))
        await c.set_remote("jigasi", jigasi_params(self.jigasi_peer))
        await c.bridge("trunk", "jigasi")
        for sid in self.python_sends:
            core = self.core(sid)
            original = core.send_audio

            def counted(pcm, now, _sid=sid, _original=original):
                self.python_sends[_sid] += 1
                return _original(pcm, now)

            core.send_audio = counted
        return self

    def core(self, sid: str):
        return self.engine.legs[sid].core

    @property
    def trunk_dest(self) -> tuple[str, int]:
        return (LOCAL, self.trunk.rtp_port)

    @property
    def jigasi_dest(self) -> tuple[str, int]:
        return (LOCAL, self.jigasi.rtp_port)

    def close(self) -> None:
        self.trunk_peer.close()
        self.jigasi_peer.close()


async def open_engine(native: bool, port_low: int) -> tuple[MediaControl, MediaEngine]:
    engine = MediaEngine(
        port_low=port_low, port_high=port_low + 99, rtcp_interval=0.5, native=native
    )
    assert (engine.native is not None) == native
    return MediaControl(engine), engine


@pytest.fixture
async def native_call(dataplane):
    control, engine = await open_engine(True, 34000)
    call = await Call(control, engine).start()
    yield call
    call.close()
    await engine.close()


@pytest.fixture
async def any_call(engine_native):
    control, engine = await open_engine(engine_native, 34200)
    call = await Call(control, engine).start()
    yield call
    call.close()
    await engine.close()


def parse_all(datagrams: list[bytes]) -> list[RtpPacket]:
    return [RtpPacket.parse(d) for d in datagrams]


def rtp_only(datagrams: list[bytes]) -> list[bytes]:
    """Without our RTCP: a peer that sent RTCP to our RTP port gets our reports there
    (RTCP latches to the first RTCP from the latched host, session.py)."""
    return [d for d in datagrams if not 192 <= d[1] <= 223]


def decode_opus(packets: list[RtpPacket]) -> np.ndarray:
    dec = create_decoder("opus")
    return np.concatenate([dec.decode(p.payload) for p in packets if p.payload_type == 111])


def decode_pcmu(packets: list[RtpPacket]) -> np.ndarray:
    dec = create_decoder("PCMU")
    return np.concatenate([dec.decode(p.payload) for p in packets if p.payload_type == 0])


def band(x: np.ndarray, freq: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    return float(spec[(freqs > freq - 30) & (freqs < freq + 30)].max())


def peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / 8000)[np.argmax(spec)])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def assert_continuous(packets: list[RtpPacket], ts_step: int) -> None:
    """One SSRC, sequence numbers +1 and timestamps +ts_step from packet to packet (RFC
    3550 §5.1: the receiver must see one unbroken stream whichever path sent it)."""
    assert len({p.ssrc for p in packets}) == 1
    seqs = [p.sequence_number for p in packets]
    gaps = [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:], strict=False)]
    assert set(gaps) == {1}, [i for i, g in enumerate(gaps) if g != 1][:10]
    # RFC 4733 events carry their start timestamp; the audio clock runs on under them.
    audio = [p for p in packets if p.payload_type != TRUNK_TE]
    steps = {
        ((b.timestamp - a.timestamp) & 0xFFFFFFFF)
        - ts_step * ((b.sequence_number - a.sequence_number) & 0xFFFF)
        for a, b in zip(audio, audio[1:], strict=False)
    }
    assert steps == {0}, sorted(steps)


def opus_sine(freq: float, amplitude: float):
    enc = create_encoder("opus", bitrate=24000)
    t = np.arange(160) / 8000

    def frame(n: int) -> tuple[bytes, int]:
        x = (amplitude * np.sin(2 * np.pi * freq * (t + n * 0.02))).astype(np.int16)
        level = int(min(127, max(0, round(-20 * np.log10(max(rms(x), 1.0) / 32768)))))
        return enc.encode(x), level

    return frame


# -- a. present when CI requires it ---------------------------------------------------------


def test_the_c_data_plane_is_built_and_configured_when_ci_requires_it():
    module = dataplane_loader.native()
    if os.environ.get(REQUIRE_NATIVE_ENV) == "1":
        assert module is not None, (
            f"{REQUIRE_NATIVE_ENV}=1 but dataplane.native() is None: the extension is not "
            "built or DIALBRIDGE_MEDIA_NATIVE turns it off; the engine would silently run Python"
        )
    module = native_dataplane_or_skip()
    # Configured by the loader: G.711 tables and libopus handed over, so every codec the
    # engine bridges has a native path; anything else stays in Python.
    assert [module.codec_id(c) for c in ("PCMU", "pcma", "OPUS", "G722", "telephone-event")] == [
        0,
        1,
        2,
        None,
        None,
    ]


def test_the_environment_switch_turns_the_c_data_plane_off(monkeypatch):
    native_dataplane_or_skip()
    monkeypatch.setenv("DIALBRIDGE_MEDIA_NATIVE", "0")
    assert dataplane_loader.native() is None
    monkeypatch.setenv("DIALBRIDGE_MEDIA_NATIVE", "1")
    assert dataplane_loader.native() is not None


# -- b. a bridged call end to end on the native path -----------------------------------------


async def test_trunk_tone_reaches_jigasi_as_opus_with_levels_from_c(native_call):
    call = native_call
    tone = pcmu_tone(1000.0, amplitude=10000.0)
    peers = (call.trunk_peer, call.jigasi_peer)
    await run_for(0.3, *peers, each_tick=lambda n: call.trunk_peer.send(call.trunk_dest, tone(n)))
    settled = dict(call.python_sends)
    start = len(call.jigasi_peer.received)
    await run_for(
        1.8, *peers, each_tick=lambda n: call.trunk_peer.send(call.trunk_dest, tone(n + 15))
    )
    during = len(call.jigasi_peer.received)
    await run_for(0.6, *peers)  # the tone stops: comfort silence, V flag cleared
    packets = parse_all(call.jigasi_peer.received)

    assert call.python_sends["jigasi"] == settled["jigasi"]  # tick_plain sent them all
    assert during - start >= 75  # ~90 in 1.8 s; slack for a busy CI box
    assert all(p.payload_type == 111 for p in packets)
    assert_continuous(packets, 960)
    tone_part = packets[start:during]
    assert peak_hz(decode_opus(packets)[start * 160 : during * 160]) == pytest.approx(1000, abs=20)
    levels = [p.extensions[1][0] for p in packets]
    assert all(b & 0x7F != 127 for b in levels)  # Jigasi drops level 127 (never sent)
    assert all(p.extensions[1][0] & 0x80 for p in tone_part)  # V: voice during the tone
    assert all(p.extensions[1][0] & 0x7F < 20 for p in tone_part)  # about -13 dBov
    quiet = levels[-10:]
    assert all(not b & 0x80 and b & 0x7F >= 100 for b in quiet)


async def test_jigasi_mix_reaches_the_trunk_loudest_first_from_c(native_call):
    call = native_call
    # Two talkers and a participant whose level says "quiet" (-90 dBov) although the
    # packets carry a loud 1 kHz sine: the mixer decides on the level, before decoding.
    talkers = [(0x11, opus_sine(400, 9000), None), (0x22, opus_sine(700, 4000), None)]
    talkers.append((0x33, opus_sine(1000, 9000), 90))
    seq = {ssrc: 0 for ssrc, _, _ in talkers}

    def send(n: int) -> None:
        for ssrc, frame, forced in talkers:
            payload, level = frame(n)
            level = forced if forced is not None else level
            pkt = RtpPacket(111, seq[ssrc], n * 960, ssrc, payload, extensions={1: bytes([level])})
            call.jigasi_peer.sock.sendto(pkt.serialize(), call.jigasi_dest)
            seq[ssrc] += 1

    peers = (call.trunk_peer, call.jigasi_peer)
    await run_for(0.3, *peers, each_tick=send)
    start = len(call.trunk_peer.received)
    settled = dict(call.python_sends)
    await run_for(1.5, *peers, each_tick=lambda n: send(n + 15))
    packets = parse_all(call.trunk_peer.received)
    assert call.python_sends["trunk"] == settled["trunk"]
    assert all(p.payload_type == 0 and not p.extensions for p in packets)
    assert_continuous(packets, 160)
    pcm = decode_pcmu(packets[start:])
    assert len(pcm) >= 60 * 160
    heard = {f: band(pcm, f) for f in (400, 700, 1000)}
    assert heard[700] > heard[400] / 10  # both talkers are in the mix
    assert heard[1000] < min(heard[400], heard[700]) / 30, heard  # > 29 dB down
    mixer = call.core("jigasi").mixer
    assert set(mixer.streams) == {0x11, 0x22, 0x33}
    assert mixer.skipped_frames >= 60  # the quiet one was never decoded


# -- c. speech quality: the native path scores like the Python path ---------------------------


def aligned(reference: np.ndarray, received: np.ndarray) -> np.ndarray:
    """``received`` shifted so that it lines up with ``reference`` (the engine's jitter
    buffer delay and the packets sent before the speech started)."""
    lag = int(np.argmax(correlate(received.astype(float), reference.astype(float), "valid")))
    return received[lag : lag + len(reference)]


@pytest.mark.slow
async def test_speech_through_the_native_engine_scores_like_the_python_engine(speech_8k):
    pesq_helpers = pytest.importorskip("tests.media.test_pesq")
    native_dataplane_or_skip()
    speech = speech_8k[: 9 * 8000]  # both engines at once: ~11 s of real time
    reference = pesq_helpers.g711(speech)  # what the trunk carries (see test_pesq)
    enc = create_encoder("PCMU")
    payloads = [enc.encode(f) for f in pesq_helpers.frames_of(speech)]
    silence = enc.encode(np.zeros(160, np.int16))
    calls = {}
    for native, port in ((True, 35000), (False, 35200)):
        control, engine = await open_engine(native, port)
        calls[native] = await Call(control, engine).start()

    def send(n: int) -> None:
        payload = payloads[n - 10] if 10 <= n < 10 + len(payloads) else silence
        for call in calls.values():
            call.trunk_peer.send(call.trunk_dest, payload)

    peers = [p for c in calls.values() for p in (c.trunk_peer, c.jigasi_peer)]
    try:
        await run_for((len(payloads) + 40) * 0.02, *peers, each_tick=send)
        scores = {}
        for native, call in calls.items():
            received = parse_all(call.jigasi_peer.received)  # loopback keeps the order
            out = aligned(reference, decode_opus(received))
            scores[native] = pesq_helpers.mos(reference, out)
        assert calls[True].python_sends["jigasi"] < 60  # the native run was native
        assert calls[False].python_sends["jigasi"] > len(payloads)
    finally:
        for call in calls.values():
            call.close()
            await call.engine.close()
    print("PESQ (native, python):", scores)
    assert scores[True] >= 4.0, scores
    assert abs(scores[True] - scores[False]) <= 0.15, scores


# -- d. nothing a peer sends stops the engine -------------------------------------------------


def _header(b0: int, b1: int, seq: int, ts: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", b0, b1, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc & 0xFFFFFFFF)


def hostile_datagrams(rng: random.Random, pt: int, other_pt: int | None) -> list[bytes]:
    """Everything wrong a peer (or an attacker) can put in a datagram to an RTP port."""
    out: list[bytes] = [b""] * 10  # empty datagrams
    out += [rng.randbytes(rng.randint(0, 1600)) for _ in range(150)]  # random bytes
    out += [rng.randbytes(rng.randint(1, 40)) for _ in range(50)]
    good = _header(0x80, pt, 7, 960, 0x99) + b"\xf8\xff\xfe"
    out += [good[:n] for n in range(1, 12)]  # truncated fixed headers
    for cc in range(1, 16):  # CSRC lists, most of them running past the end
        csrcs = rng.randbytes(4 * rng.randint(0, cc))
        out.append(_header(0x80 | cc, pt, rng.getrandbits(16), 0, 0x99) + csrcs + rng.randbytes(3))
    for count in (0, 1, 3, 200, 255):  # padding counts: zero, valid, beyond the packet
        out.append(
            _header(0xA0, pt, rng.getrandbits(16), 0, 0x99) + rng.randbytes(10) + bytes([count])
        )
    out.append(_header(0xA0, pt, 1, 0, 0x99))  # P bit, nothing after the header
    for profile in (0xBEDE, 0x1000, 0x1001, 0x1234):  # extension blocks of the wrong length
        for words in (0, 1, 2, 100, 0xFFFF):
            for tail in (b"", b"\x10", b"\x10\x8a", b"\x1f\x8a\x00", rng.randbytes(7)):
                out.append(
                    _header(0x90, pt, rng.getrandbits(16), 0, 0x99)
                    + struct.pack("!HH", profile, words)
                    + tail
                )
    for elements in (  # RFC 8285 one-byte elements that run past the block, stop, padding
        b"\x1f\xaa\x00\x00",
        b"\x00\x00\x00\x00",
        b"\xf0\x00\x00\x00",
        b"\x2f\x00\x00\x00",
        b"\x10\x8a\x00\x00",
        b"\x00\x00\x00\x10",
    ):
        out.append(
            _header(0x90, pt, rng.getrandbits(16), 0, 0x99)
            + struct.pack("!HH", 0xBEDE, 1)
            + elements
            + rng.randbytes(rng.randint(0, 20))
        )
    out.append(  # a CSRC and a two-byte-form block with an empty level element
        _header(0x91, pt, 5, 0, 0x99) + b"\x00\x00\x00\x77\x10\x00\x00\x01\x01\x00\x00\x00xx"
    )
    out.append(  # CSRCs and padding and an extension together
        _header(0xB2, pt, 3, 0, 0x99)
        + rng.randbytes(8)
        + b"\xbe\xde\x00\x01\x10\x80\x00\x00"
        + b"xyz\x04"
    )
    for rtcp_pt in (192, 200, 201, 202, 203, 204, 205, 206, 207, 223):  # RTCP on the RTP port
        for _ in range(3):
            length = rng.randint(0, 20)
            body = rng.randbytes(rng.choice((0, 4 * length, rng.randint(0, 80))))
            out.append(struct.pack("!BBH", 0x80 | rng.randint(0, 31), rtcp_pt, length) + body)
    for size in (1400, 1500, 1501, 2000, 2036, 2100, 9000, 65000):  # huge payloads
        out.append(
            _header(0x80, pt, rng.getrandbits(16), rng.getrandbits(32), 0x99) + rng.randbytes(size)
        )
    for _ in range(60):  # the negotiated PT with corrupt payloads, odd SSRCs and timestamps
        out.append(
            _header(
                0x80 | rng.choice((0, 0x40)),
                pt | rng.choice((0, 0x80)),
                rng.getrandbits(16),
                rng.getrandbits(32),
                rng.choice((0x99, 0, 0xFFFFFFFF, rng.getrandbits(32))),
            )
            + rng.randbytes(rng.randint(0, 300))
        )
    for other in (other_pt, 13, 0, 8, 9, 96, 127):  # telephone-event, CN, unknown PTs
        if other is not None and other != pt:
            out += [
                _header(0x80, other, rng.getrandbits(16), 0, 0x99)
                + rng.randbytes(rng.randint(0, 12))
                for _ in range(5)
            ]
    rng.shuffle(out)
    return out


async def test_hostile_datagrams_never_stop_the_engine_and_audio_still_flows(any_call):
    call = any_call
    engine = call.engine
    loop = asyncio.get_running_loop()
    loop_errors: list[dict] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    rng = random.Random(6464)
    foreign = Peer()
    trunk_tone = pcmu_tone(1000.0, amplitude=10000.0)
    jigasi_tone = opus_sine(500, 9000)
    to_trunk = hostile_datagrams(rng, 0, TRUNK_TE)
    to_jigasi = hostile_datagrams(rng, 111, None)
    burst = [
        _header(0x80, 111, k, k * 960, 0x4000 + k % 5) + rng.randbytes(rng.randint(0, 80))
        for k in range(2000)
    ]

    def good(n: int) -> None:
        call.trunk_peer.send(call.trunk_dest, trunk_tone(n))
        payload, level = jigasi_tone(n)
        pkt = RtpPacket(111, n, n * 960, 0x5151, payload, extensions={1: bytes([level])})
        call.jigasi_peer.sock.sendto(pkt.serialize(), call.jigasi_dest)

    def send_all(sock: socket.socket, datagrams: list[bytes], dest) -> None:
        for d in datagrams:
            with contextlib.suppress(BlockingIOError):  # our send buffer is full: not sent
                sock.sendto(d, dest)

    def hostile(n: int) -> None:
        good(n)
        k = n % 25
        for peer, dest, datagrams in (
            (call.trunk_peer, call.trunk_dest, to_trunk),
            (call.jigasi_peer, call.jigasi_dest, to_jigasi),
        ):
            batch = datagrams[k * len(datagrams) // 25 : (k + 1) * len(datagrams) // 25]
            send_all(peer.sock, batch, dest)  # from the latched address
            send_all(foreign.sock, batch[::3], dest)  # and from a foreign one
            send_all(
                foreign.sock, [RtpPacket(0, n, n * 160, 0xBAD, b"\xff" * 160).serialize()], dest
            )
        if n == 30:
            send_all(call.jigasi_peer.sock, burst, call.jigasi_dest)  # 2000 in one tick
            send_all(call.trunk_peer.sock, burst[:500], call.trunk_dest)

    peers = (call.trunk_peer, call.jigasi_peer, foreign)
    try:
        await run_for(0.3, *peers, each_tick=good)
        await run_for(1.5, *peers, each_tick=lambda n: hostile(n + 15))
        during = (len(call.trunk_peer.received), len(call.jigasi_peer.received))
        call.trunk_peer.received.clear()
        call.jigasi_peer.received.clear()
        await run_for(1.5, *peers, each_tick=lambda n: good(n + 90))
        to_jigasi_pcm = decode_opus(parse_all(rtp_only(call.jigasi_peer.received))[-50:])
        # Jigasi -> trunk: the attack came from the latched Jigasi address, so its garbage
        # SSRCs are streams of that leg's mixer (without levels: ranked loud) until they have
        # played out and the 5 s stream timeout forgets them. Wait for that (bounded).
        mixer = call.core("jigasi").mixer
        for k in range(16):
            if set(mixer.streams) == {0x5151}:
                break
            await run_for(0.5, *peers, each_tick=lambda n, k=k: good(n + 165 + 25 * k))
        call.trunk_peer.received.clear()
        await run_for(0.6, *peers, each_tick=lambda n: good(n + 600))
        to_trunk_pcm = decode_pcmu(parse_all(rtp_only(call.trunk_peer.received))[-25:])
        assert set(mixer.streams) == {0x5151}
    finally:
        loop.set_exception_handler(previous_handler)
        foreign.close()
    assert engine.tick_errors == 0
    assert loop_errors == []
    assert during[0] >= 55 and during[1] >= 55  # the legs kept sending while attacked
    # Never latched to the foreign source for RTP (it is on our host, so RTCP on the RTP port
    # may latch our RTCP to it: RTCP latching is by host, session.py).
    assert rtp_only(foreign.received) == []
    assert peak_hz(to_jigasi_pcm) == pytest.approx(1000, abs=20)
    assert rms(to_jigasi_pcm) > 2000
    assert peak_hz(to_trunk_pcm) == pytest.approx(500, abs=20)
    assert rms(to_trunk_pcm) > 2000
    for sid in ("trunk", "jigasi"):
        assert call.core(sid).packets_dropped > 0  # the garbage was seen and counted


# -- e. mute, prompts and RFC 4733 move a native direction to Python and back -----------------


async def test_mute_and_prompt_keep_one_continuous_stream_across_c_and_python(native_call):
    call = native_call
    tone = pcmu_tone(600.0, amplitude=10000.0)
    peers = (call.trunk_peer, call.jigasi_peer)
    sends = call.python_sends
    marks: dict[str, tuple[int, int]] = {}

    async def phase(name: str, seconds: float, offset: int) -> None:
        first, python_before = len(call.jigasi_peer.received), sends["jigasi"]
        await run_for(
            seconds,
            *peers,
            each_tick=lambda n: call.trunk_peer.send(call.trunk_dest, tone(n + offset)),
        )
        marks[name] = (first, len(call.jigasi_peer.received))
        marks[name + ":python"] = (python_before, sends["jigasi"])

    await phase("live", 0.8, 0)
    await call.control.mute("trunk", True)
    await phase("muted", 0.8, 40)
    await call.control.mute("trunk", False)
    await call.control.play("jigasi", "ring", tone="ringback_eu")  # 425 Hz, 1 s on
    await phase("prompt", 0.6, 80)
    await call.control.stop("jigasi", "ring")
    await phase("after", 0.8, 110)
    packets = parse_all(call.jigasi_peer.received)
    pcm = decode_opus(packets)

    def part(name: str, skip: int = 8) -> np.ndarray:
        first, last = marks[name]
        return pcm[(first + skip) * 160 : last * 160]

    def python_ticks(name: str) -> int:
        before, after = marks[name + ":python"]
        return after - before

    assert_continuous(packets, 960)  # one stream whichever path sent each packet
    for name in ("live", "muted", "prompt", "after"):
        first, last = marks[name]
        assert last - first >= 0.75 * 50 * {"prompt": 0.6}.get(name, 0.8), name  # never silent
    assert peak_hz(part("live")) == pytest.approx(600, abs=20)
    assert rms(part("muted")) < 100 < rms(part("live")) / 20  # comfort silence only
    assert all(
        not p.extensions[1][0] & 0x80 for p in packets[marks["muted"][0] + 15 : marks["muted"][1]]
    )
    # The prompt is heard (Opus SILK at 8 kHz codes a 425 Hz tone with an integer pitch lag
    # of 18 samples: 444 Hz).
    assert peak_hz(part("prompt")) == pytest.approx(435, abs=20)
    assert band(part("prompt"), 600) < band(part("prompt"), 425) / 30  # REPLACE mode
    assert peak_hz(part("after")) == pytest.approx(600, abs=20)
    # Which path sent: C while live, muted and after; Python while the prompt played.
    assert python_ticks("live") == python_ticks("muted") == python_ticks("after") == 0
    assert python_ticks("prompt") >= 25


async def test_rfc_4733_digits_sent_on_a_native_direction_keep_the_stream_continuous(native_call):
    call = native_call
    peers = (call.trunk_peer, call.jigasi_peer)
    await run_for(0.4, *peers)
    before = call.python_sends["trunk"]
    await call.control.send_dtmf("trunk", "15", duration=0.1)
    await run_for(0.8, *peers)
    during = call.python_sends["trunk"]
    await run_for(0.4, *peers)
    packets = parse_all(call.trunk_peer.received)
    events = [p for p in packets if p.payload_type == TRUNK_TE]
    assert_continuous(packets, 160)
    assert {p.payload[0] for p in events} == {1, 5}  # RFC 4733 §3.2: events 1 and 5
    assert during - before >= len(events) // 2  # Python sent while the digits were busy
    assert call.python_sends["trunk"] == during  # and C took over again afterwards


# -- the C entry points themselves: random input and misuse raise or are dropped, never crash --


@pytest.mark.parametrize(
    ("codec", "single"), [("PCMU", True), ("PCMA", False), ("opus", True), ("opus", False)]
)
def test_native_playout_survives_random_packets(dataplane, codec, single):
    rng = random.Random(f"{codec}{single}")
    step = 960 if codec == "opus" else 160
    playout = dataplane.Playout(
        codec, single=single, clock_rate=48000 if codec == "opus" else 8000, frame_samples=step
    )
    valid = create_encoder(codec).encode(np.zeros(160, np.int16))
    now = 0.0
    for n in range(4000):
        ssrc = rng.choice((1, 2, 3, rng.getrandbits(32)))  # > 64 streams over the run
        seq = rng.choice((n, n + 1, n - 50, rng.getrandbits(16)))
        ts = rng.choice((n * step, (n - 3) * step, rng.getrandbits(32), 0xFFFFFFFF))
        payload = rng.choice((valid, b"", rng.randbytes(rng.randint(1, 2000)), valid[:3]))
        level = rng.choice((None, 0, 30, 126, 127, -1, 128, 1000, -(2**31)))
        assert playout.push_payload(ssrc, seq, ts, payload, now, level) in (True, False)
        if n % 3 == 0:
            now += rng.choice((0.0, 0.02, 0.02, 0.5, 3.0))
            frame = playout.mix(now)
            assert frame.pcm.dtype == np.int16 and frame.pcm.shape == (160,)
            assert frame.active == bool(frame.sources)
        if n % 97 == 0:
            playout.remove(ssrc)
            assert isinstance(playout.streams, dict)
    assert playout.decoded_frames > 0


def test_native_meter_takes_frames_of_any_length_like_the_python_meter(dataplane):
    rng = np.random.default_rng(9)
    python, native = AudioLevelMeter(), dataplane.AudioLevelMeter()
    for length in (0, 1, 2, 159, 161, 320, 960, 48000):
        frame = (rng.normal(0, 3000, length)).astype(np.int16)
        assert native.level_byte(frame) == python.level_byte(frame), length
    with pytest.raises((BufferError, ValueError)):
        native.level_byte(np.zeros(320, np.int16)[::2])  # not contiguous
    with pytest.raises(TypeError):
        native.level_byte("not audio")


def test_native_entry_points_reject_misuse_with_python_errors(dataplane):
    with pytest.raises(TypeError):
        dataplane.drain("not a list", 0.0, 0.0)
    with pytest.raises(TypeError):
        dataplane.drain([(1,)], 0.0, 0.0)
    with pytest.raises(TypeError):
        dataplane.drain([("fd", None)], 0.0, 0.0)
    assert dataplane.drain([(-1, None), (10**6, None)], 0.0, 0.0) == []  # bad fds: nothing read
    with pytest.raises(TypeError):
        dataplane.tick_plain(1, 2, 3)
    with pytest.raises((AttributeError, TypeError)):
        dataplane.tick_plain(object(), object(), -1, False, 0.0)
    with pytest.raises(ValueError):
        dataplane.Playout("G722", clock_rate=16000, frame_samples=320)
    with pytest.raises(ValueError):
        dataplane.Playout("PCMU", clock_rate=8000, frame_samples=160, pcm_samples=320)
    with pytest.raises(ValueError):
        dataplane.Playout("PCMU", clock_rate=0, frame_samples=160)
    playout = dataplane.Playout("PCMU", clock_rate=8000, frame_samples=160)
    with pytest.raises(TypeError):
        playout.push_payload(1, 2, 3)
    with pytest.raises(TypeError):
        playout.push_payload(1, 2, 3, None, 0.0, None)  # payload must be bytes-like
    with pytest.raises(TypeError):
        playout.mix("now")
    with pytest.raises(AttributeError):
        playout.push(object(), 0.0)
    assert dataplane.codec_id("") is None


# -- tick_plain sends byte for byte what the Python send path sends -----------------------------


def bridged_pair(native: bool, trunk_rx: socket.socket, jigasi_rx: socket.socket):
    from dialbridge.media.bridge import Bridge
    from dialbridge.media.session import MediaSession

    trunk = MediaSession(
        "trunk",
        RtpParameters(
            "PCMU", 0, telephone_event_pt=TRUNK_TE, remote_rtp=trunk_rx.getsockname(), max_streams=1
        ),
        now=0.0,
        rng=random.Random(1),
        native=native,
    )
    jigasi = MediaSession(
        "jigasi",
        RtpParameters(
            "opus", 111, audio_level_id=1, remote_rtp=jigasi_rx.getsockname(), max_streams=2
        ),
        now=0.0,
        rng=random.Random(2),
        native=native,
    )
    return trunk, jigasi, Bridge(trunk, jigasi)


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCAL, 0))
    sock.setblocking(False)
    return sock


def received_now(sock: socket.socket) -> list[bytes]:
    got = []
    with contextlib.suppress(BlockingIOError):
        while True:
            got.append(sock.recv(4096))
    return got


def test_tick_plain_sends_exactly_what_the_python_send_path_sends(dataplane):
    from dialbridge.media.playback import TONES, PlayMode

    rng = random.Random(17)
    sockets = [udp_socket() for _ in range(4)]  # trunk rx, jigasi rx, and one to send from
    out_sock = udp_socket()
    legs = {
        native: bridged_pair(native, sockets[2 * native], sockets[2 * native + 1])
        for native in (False, True)
    }
    trunk_native, jigasi_native, _ = legs[True]
    trunk_native.rtp_fd = jigasi_native.rtp_fd = out_sock.fileno()
    ulaw = create_encoder("PCMU")
    talkers = [
        (0x11, opus_sine(400, 9000)),
        (0x22, opus_sine(700, 3000)),
        (0x33, opus_sine(1000, 500)),
    ]
    t = np.arange(160) / 8000
    inbound = []
    for k in range(500):
        x = (9000 * np.sin(2 * np.pi * 300 * (t + k * 0.02)) * (k % 100 < 70)).astype(np.int16)
        inbound.append(
            (
                k * 0.02 + rng.uniform(0, 0.04),
                "trunk",
                RtpPacket(0, k, k * 160, 0xCAFE, ulaw.encode(x)).serialize(),
            )
        )
        for ssrc, frame in talkers:
            payload, level = frame(k)
            if (k // 80) % 3 == ssrc % 3:
                level = 127 if ssrc == 0x33 else level + 40  # the talkers take turns
            if rng.random() < 0.03:
                continue
            pkt = RtpPacket(
                111, k, k * 960, ssrc, payload, extensions={1: bytes([min(127, level)])}
            )
            inbound.append((k * 0.02 + rng.uniform(0, 0.04), "jigasi", pkt.serialize()))
    inbound.sort(key=lambda a: a[0])
    sent: dict[bool, dict[str, list[bytes]]] = {
        n: {"trunk": [], "jigasi": []} for n in (False, True)
    }
    i = 0
    python_sends = 0
    for n in range(520):
        now = n * 0.02 + 0.003
        batch = []
        while i < len(inbound) and inbound[i][0] <= now:
            batch.append(inbound[i])
            i += 1
        for native, (trunk, jigasi, bridge) in legs.items():
            cores = {"trunk": trunk, "jigasi": jigasi}
            for arrival, sid, data in batch:
                cores[sid].receive_rtp(data, cores[sid].params.remote_rtp, arrival)
            if n == 100:
                bridge.mute(trunk, True)
            if n == 160:
                bridge.mute(trunk, False)
                jigasi.player.play("ring", TONES["ringback_eu"], PlayMode.REPLACE)
            if n == 230:
                jigasi.player.stop("ring")
            if n == 300:
                assert trunk.send_dtmf("42", 0.1)
            before = trunk.packets_sent + jigasi.packets_sent
            bridge.tick(now)
            assert trunk.packets_sent + jigasi.packets_sent == before + 2  # one each, always
            for sid, core in cores.items():
                sent[native][sid].extend(data for data, _ in core.outbox)
                if native:
                    python_sends += len(core.outbox)
                    sent[native][sid].extend(received_now(sockets[2 + (sid == "jigasi")]))
                core.outbox.clear()
    for sock in (*sockets, out_sock):
        sock.close()
    for sid in ("trunk", "jigasi"):
        python, native = sent[False][sid], sent[True][sid]
        assert len(python) == 520
        assert len(native) == 520  # loopback: nothing lost
        mismatches = [k for k in range(520) if python[k] != native[k]]
        assert mismatches == [], (sid, mismatches[:10])
    # The native run sent most packets from C: Python only for the prompt and the digits.
    assert 70 <= python_sends <= 130


async def test_a_datagram_too_large_for_rtp_is_counted_as_dropped(native_call):
    # drain() reads at most 2048 bytes; a longer datagram is truncated by the kernel and must
    # be dropped and counted, as the Python receive path counts what it refuses.
    trunk = native_call.core("trunk")
    before = trunk.packets_dropped
    sender = native_call.trunk_peer.sock
    sender.sendto(_header(0x80, 0, 1, 160, 0x77) + bytes(3000), native_call.trunk_dest)
    await run_for(0.1, native_call.trunk_peer, native_call.jigasi_peer)
    assert trunk.packets_dropped == before + 1
    assert native_call.engine.tick_errors == 0
