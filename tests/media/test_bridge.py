"""Two legs bridged (sans-IO, fake clock): transcoding, mute, playback injection, DTMF."""

from __future__ import annotations

import numpy as np

from dialbridge.media.bridge import Bridge, tick_alone
from dialbridge.media.codecs import create_decoder, create_encoder
from dialbridge.media.dtmf import Rfc4733Receiver, Rfc4733Sender, dtmf_tone
from dialbridge.media.playback import TONES, PlaybackFinished, PlayMode
from dialbridge.media.rtp import RtpPacket
from dialbridge.media.session import DtmfReceived, DtmfStarted, MediaSession, RtpParameters

TICK = 0.020
TRUNK = ("127.0.0.1", 40000)
JIGASI = ("127.0.0.1", 40002)


def legs(trunk_codec: str = "PCMU", inband: bool = False) -> tuple[MediaSession, MediaSession]:
    pt = {"PCMU": 0, "PCMA": 8}[trunk_codec]
    trunk = MediaSession(
        "trunk",
        RtpParameters(
            trunk_codec, pt, telephone_event_pt=101, remote_rtp=TRUNK, inband_dtmf=inband
        ),
        now=0.0,
    )
    jigasi = MediaSession(
        "jigasi", RtpParameters("opus", 111, audio_level_id=1, remote_rtp=JIGASI), now=0.0
    )
    return trunk, jigasi


def sine(freq: float, n_frames: int, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(n_frames * 160) / 8000
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


class Call:
    """Drives a bridge: feeds each leg one frame per tick, decodes what each leg sends."""

    def __init__(self, trunk: MediaSession, jigasi: MediaSession) -> None:
        self.trunk, self.jigasi = trunk, jigasi
        self.bridge = Bridge(trunk, jigasi)
        codec = trunk.params.codec
        self.trunk_enc = create_encoder(codec)
        self.jigasi_enc = create_encoder("opus")
        self.at_jigasi = create_decoder("opus")
        self.at_trunk = create_decoder(codec)
        self.n = 0
        self.to_jigasi: list[np.ndarray] = []
        self.to_trunk: list[np.ndarray] = []
        self.trunk_packets: list[RtpPacket] = []
        self.events: list = []

    def tick(self, from_trunk: np.ndarray | None, from_jigasi: np.ndarray | None) -> None:
        n, now = self.n, self.n * TICK
        if from_trunk is not None:
            pkt = RtpPacket(
                self.trunk.params.payload_type, n, n * 160, 0x7, self.trunk_enc.encode(from_trunk)
            )
            self.trunk.receive_rtp(pkt.serialize(), TRUNK, now)
        if from_jigasi is not None:
            pkt = RtpPacket(
                111, n, n * 960, 0x9, self.jigasi_enc.encode(from_jigasi), extensions={1: b"\x94"}
            )
            self.jigasi.receive_rtp(pkt.serialize(), JIGASI, now)
        self.bridge.tick(now + 0.01)
        for leg in (self.trunk, self.jigasi):
            leg.handle_timers(now + 0.01)
            self.events += leg.pop_events()
        for data, _ in self.jigasi.outbox:
            self.to_jigasi.append(self.at_jigasi.decode(RtpPacket.parse(data).payload))
        for data, _ in self.trunk.outbox:
            pkt = RtpPacket.parse(data)
            self.trunk_packets.append(pkt)
            if pkt.payload_type == self.trunk.params.payload_type:
                self.to_trunk.append(self.at_trunk.decode(pkt.payload))
        self.jigasi.outbox.clear()
        self.trunk.outbox.clear()
        self.n += 1

    def run(self, trunk_audio: np.ndarray | None, jigasi_audio: np.ndarray | None, frames: int):
        for i in range(frames):
            self.tick(
                None if trunk_audio is None else trunk_audio[i * 160 : (i + 1) * 160],
                None if jigasi_audio is None else jigasi_audio[i * 160 : (i + 1) * 160],
            )


def band_level(x: np.ndarray, freq: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(float) * np.hanning(len(x)))) / len(x)
    f = np.fft.rfftfreq(len(x), 1 / 8000)
    return float(spec[(f > freq - 30) & (f < freq + 30)].max())


def test_pcma_trunk_and_opus_jigasi_hear_each_other():
    call = Call(*legs("PCMA"))
    call.run(sine(600, 60), sine(1100, 60), 60)
    at_jigasi = np.concatenate(call.to_jigasi[-30:])
    at_trunk = np.concatenate(call.to_trunk[-30:])
    assert band_level(at_jigasi, 600) > 100 * band_level(at_jigasi, 1100)
    assert band_level(at_trunk, 1100) > 100 * band_level(at_trunk, 600)


def test_mute_stops_one_direction_only_and_keeps_packets_flowing():
    call = Call(*legs())
    call.bridge.mute(call.trunk)
    call.run(sine(600, 50), sine(1100, 50), 50)
    assert len(call.to_jigasi) == 50  # Jigasi still gets a packet every tick
    assert np.abs(np.concatenate(call.to_jigasi[-30:])).max() < 50
    assert band_level(np.concatenate(call.to_trunk[-30:]), 1100) > 500
    call.bridge.mute(call.trunk, False)
    call.run(sine(600, 30), sine(1100, 30), 30)
    assert band_level(np.concatenate(call.to_jigasi[-20:]), 600) > 500


def test_prompt_mixed_into_the_bridged_audio_of_one_leg():
    trunk, jigasi = legs()
    call = Call(trunk, jigasi)
    trunk.player.play("ring", TONES["ringback_us"], PlayMode.MIX)
    call.run(None, sine(1500, 40), 40)
    heard = np.concatenate(call.to_trunk[-25:])
    assert band_level(heard, 440) > 300 and band_level(heard, 480) > 300
    assert band_level(heard, 1500) > 300
    trunk.player.stop()
    assert PlaybackFinished("ring", False, "trunk") in trunk.pop_events()


def test_rfc4733_digits_from_the_trunk_become_events():
    trunk, jigasi = legs()
    call = Call(trunk, jigasi)
    sender = Rfc4733Sender()
    sender.send("5#", duration_ms=100)
    for n in range(30):
        call.tick(None, None)
        te = sender.next_packet(n * 160)
        if te is not None:
            pkt = RtpPacket(101, 1000 + n, te.timestamp, 0x7, te.payload, te.marker)
            trunk.receive_rtp(pkt.serialize(), TRUNK, n * TICK)
    digits = [(e.digit, e.source) for e in call.events if isinstance(e, DtmfReceived)]
    assert digits == [("5", "rfc4733"), ("#", "rfc4733")]
    assert [e.digit for e in call.events if isinstance(e, DtmfStarted)] == ["5", "#"]


def test_inband_tone_is_detected_and_blanked_from_audio_to_the_conference():
    call = Call(*legs(inband=True))
    speech_like = sine(300, 40, 6000)
    tone = dtmf_tone("7", 0.2, level_dbm0=-8).astype(np.int16)  # 10 frames
    audio = speech_like.copy()
    audio[15 * 160 : 25 * 160] = tone
    call.run(audio, None, 40)
    assert [e.digit for e in call.events if isinstance(e, DtmfReceived)] == ["7"]
    # Frames are delayed by the look-back; find where the 300 Hz audio sits and check that
    # the tone's frequencies (852 + 1209 Hz) never reach Jigasi.
    heard = np.concatenate(call.to_jigasi)
    assert band_level(heard, 300) > 300
    assert band_level(heard, 852) < band_level(heard, 300) / 100
    assert band_level(heard, 1209) < band_level(heard, 300) / 100


def test_digits_sent_to_the_trunk_are_rfc4733_packets_in_the_audio_stream():
    trunk, jigasi = legs()
    call = Call(trunk, jigasi)
    assert trunk.send_dtmf("19", duration=0.08)
    call.run(None, None, 30)
    events = [p for p in call.trunk_packets if p.payload_type == 101]
    assert events and events[0].marker
    assert len({p.ssrc for p in call.trunk_packets}) == 1
    seqs = [p.sequence_number for p in call.trunk_packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    rx = Rfc4733Receiver()
    got = [ev.digit for p in events for ev in rx.receive(p, 0.0)]
    assert got == ["1", "9"]


def test_a_lone_leg_sends_prompts_then_comfort_silence():
    trunk, _ = legs()
    trunk.player.play("b", TONES["beep"], PlayMode.REPLACE)
    dec = create_decoder("PCMU")
    out = []
    for n in range(20):
        tick_alone(trunk, n * TICK)
        out += [dec.decode(RtpPacket.parse(d).payload) for d, _ in trunk.outbox]
        trunk.outbox.clear()
    assert len(out) == 20
    assert band_level(np.concatenate(out[:10]), 1000) > 500
    assert np.abs(np.concatenate(out[12:])).max() < 10
    assert trunk.pop_events() == [PlaybackFinished("b", True, "trunk")]


def relay_legs() -> tuple[MediaSession, MediaSession]:
    a = MediaSession(
        "a",
        RtpParameters("PCMU", 0, telephone_event_pt=101, remote_rtp=TRUNK, max_streams=1),
        now=0.0,
    )
    b = MediaSession(
        "b",
        RtpParameters("PCMU", 0, telephone_event_pt=96, remote_rtp=JIGASI, max_streams=1),
        now=0.0,
    )
    return a, b


def test_same_codec_is_relayed_with_our_header_and_unchanged_payload():
    a, b = relay_legs()
    bridge = Bridge(a, b)
    enc = create_encoder("PCMU")
    tone = sine(700, 40)
    sent_payloads, out = [], []
    for n in range(40):
        payload = enc.encode(tone[n * 160 : (n + 1) * 160])
        sent_payloads.append(payload)
        pkt = RtpPacket(0, 5000 + n, 777_000 + n * 160, 0xDEAD, payload)
        a.receive_rtp(pkt.serialize(), TRUNK, n * TICK)
        bridge.tick(n * TICK + 0.01)
        out += [RtpPacket.parse(d) for d, _ in b.outbox]
        b.outbox.clear()
        a.outbox.clear()
    relayed = [p for p in out if p.payload in sent_payloads]
    assert len(relayed) >= 38  # no decode, no jitter buffer: bytes pass through
    assert {p.ssrc for p in out} == {b.ssrc} and b.ssrc != 0xDEAD
    seqs = [p.sequence_number for p in out]
    assert all((y - x) & 0xFFFF == 1 for x, y in zip(seqs, seqs[1:], strict=False))
    stamps = [p.timestamp for p in relayed]
    assert all((y - x) & 0xFFFFFFFF == 160 for x, y in zip(stamps, stamps[1:], strict=False))
    assert a.mixer.decoded_frames == 0


def test_relay_falls_back_to_transcoding_for_a_prompt_and_never_goes_silent():
    a, b = relay_legs()
    bridge = Bridge(a, b)
    b.player.play("beep", TONES["beep"], PlayMode.REPLACE)
    count = 0
    for n in range(30):  # a sends nothing at all: b still gets a packet every tick
        bridge.tick(n * TICK)
        count += len(b.outbox)
        b.outbox.clear()
    assert count == 30
    assert not b.player.active and a.relay_to is b


def test_comfort_silence_is_a_cached_payload_not_an_encode_per_tick():
    trunk, jigasi = legs()

    class CountingEncoder:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def encode(self, pcm):
            self.calls += 1
            return self.inner.encode(pcm)

    jigasi.encoder = counting = CountingEncoder(jigasi.encoder)
    call = Call(trunk, jigasi)
    call.bridge.mute(trunk)
    call.run(sine(600, 50), None, 50)
    assert counting.calls == 1  # only the very first packet (marker bit) is encoded
    assert len(call.to_jigasi) == 50
    assert np.abs(np.concatenate(call.to_jigasi[5:])).max() < 20  # decodes to silence
    call.bridge.mute(trunk, False)
    call.run(sine(600, 30), None, 30)
    assert counting.calls >= 25
    assert band_level(np.concatenate(call.to_jigasi[-20:]), 600) > 500


def test_relayed_rfc4733_events_keep_their_timing_with_the_sink_payload_type():
    a, b = relay_legs()
    bridge = Bridge(a, b)
    sender = Rfc4733Sender()
    sender.send("8", duration_ms=100)
    out = []
    for n in range(20):
        te = sender.next_packet(n * 160)
        if te is not None:
            pkt = RtpPacket(101, 100 + n, te.timestamp, 0x7, te.payload, te.marker)
            a.receive_rtp(pkt.serialize(), TRUNK, n * TICK)
        bridge.tick(n * TICK + 0.01)
        out += [RtpPacket.parse(d) for d, _ in b.outbox]
        b.outbox.clear()
    events = [p for p in out if p.payload_type == 96]  # b negotiated telephone-event as 96
    assert events and events[0].marker
    assert len({p.timestamp for p in events}) == 1  # one event, one timestamp (RFC 4733 §2.5)
    assert [e.digit for e in a.pop_events() if isinstance(e, DtmfReceived)] == ["8"]
    rx = Rfc4733Receiver()
    assert [ev.digit for p in events for ev in rx.receive(p, 0.0)] == ["8"]


def test_a_new_codec_on_one_leg_turns_relay_into_transcoding():
    a, b = relay_legs()
    bridge = Bridge(a, b)
    assert a.relay_to is b
    b.set_parameters(RtpParameters("PCMA", 8, remote_rtp=JIGASI, max_streams=1))  # re-INVITE
    bridge.tick(0.0)
    assert a.relay_to is None and b.relay_to is None
    enc = create_encoder("PCMU")
    out = []
    for n in range(1, 30):
        pkt = RtpPacket(0, n, n * 160, 0x7, enc.encode(sine(700, 1)))
        a.receive_rtp(pkt.serialize(), TRUNK, n * TICK)
        bridge.tick(n * TICK + 0.01)
        out += [RtpPacket.parse(d) for d, _ in b.outbox]
        b.outbox.clear()
    assert {p.payload_type for p in out} == {8}
