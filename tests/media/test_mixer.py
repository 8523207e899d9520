"""Multi-SSRC mixing: N-loudest selection by RFC 6464 level before decoding, clipping."""

from __future__ import annotations

import numpy as np

from dialbridge.media.codecs import create_decoder, create_encoder
from dialbridge.media.mixer import Mixer, mix_pcm
from dialbridge.media.rtp import RtpPacket

TICK = 0.020
FREQS = [400.0, 700.0, 1000.0, 1300.0, 1600.0]


def dbov_level(pcm: np.ndarray) -> int:
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    if rms < 1:
        return 127
    return int(min(127, max(0, round(-20 * np.log10(rms / 32768)))))


def sine_frames(freq: float, amplitude: float, n: int) -> list[np.ndarray]:
    t = np.arange(n * 160) / 8000.0
    x = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [x[i * 160 : (i + 1) * 160] for i in range(n)]


def run_five_streams(amplitudes: list[float], ticks: int = 150) -> tuple[Mixer, np.ndarray]:
    mixer = Mixer(lambda: create_decoder("opus"), clock_rate=48000, frame_samples=960)
    streams = []
    for i, (f, a) in enumerate(zip(FREQS, amplitudes, strict=True)):
        streams.append(
            (0x1000 + i, create_encoder("opus", bitrate=24000), sine_frames(f, a, ticks))
        )
    out = []
    for n in range(ticks):
        now = n * TICK
        for ssrc, enc, frames in streams:
            pkt = RtpPacket(111, n, n * 960, ssrc, enc.encode(frames[n]))
            mixer.push(pkt, now, level=dbov_level(frames[n]))
        out.append(mixer.mix(now + 0.010).pcm)
    return mixer, np.concatenate(out[20:])


def band_energy(x: np.ndarray, freq: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    band = (freqs > freq - 40) & (freqs < freq + 40)
    return float(spec[band].max())


def test_only_the_three_loudest_of_five_streams_are_heard():
    # Louder streams first would be too easy; shuffle loudness across frequencies.
    amplitudes = [2000.0, 9000.0, 500.0, 6000.0, 4000.0]
    mixer, mixed = run_five_streams(amplitudes)
    loud = {FREQS[1], FREQS[3], FREQS[4]}
    energies = {f: band_energy(mixed, f) for f in FREQS}
    weakest_loud = min(energies[f] for f in loud)
    for f in set(FREQS) - loud:
        assert energies[f] < weakest_loud / 30, (f, energies)  # > 29 dB below
    assert mixer.decoded_frames <= 3 * 150
    assert mixer.skipped_frames >= 2 * 120


def test_selection_follows_the_levels_when_the_talker_changes():
    mixer = Mixer(lambda: create_decoder("PCMU"), clock_rate=8000, frame_samples=160, max_streams=1)
    enc = create_encoder("PCMU")
    a = sine_frames(500, 8000, 100)
    b = sine_frames(1500, 8000, 100)
    picked = []
    for n in range(100):
        now = n * TICK
        la, lb = (10, 60) if n < 50 else (60, 10)
        mixer.push(RtpPacket(0, n, n * 160, 1, enc.encode(a[n])), now, level=la)
        mixer.push(RtpPacket(0, n, n * 160, 2, enc.encode(b[n])), now, level=lb)
        picked.append(mixer.mix(now + 0.01).sources)
    assert picked[10:45] == [(1,)] * 35
    assert picked[60:95] == [(2,)] * 35


def test_streams_at_level_127_are_never_decoded():
    mixer = Mixer(lambda: create_decoder("PCMU"), clock_rate=8000, frame_samples=160)
    enc = create_encoder("PCMU")
    for n in range(50):
        mixer.push(RtpPacket(0, n, n * 160, 7, enc.encode(np.zeros(160, np.int16))), n * TICK, 127)
        frame = mixer.mix(n * TICK + 0.01)
        assert not frame.active and frame.sources == ()
    assert mixer.decoded_frames == 0


def test_single_stream_without_levels_passes_through_unchanged():
    mixer = Mixer(lambda: create_decoder("PCMU"), clock_rate=8000, frame_samples=160)
    enc, dec = create_encoder("PCMU"), create_decoder("PCMU")
    frames = sine_frames(440, 10000, 30)
    got = []
    for n in range(30):
        mixer.push(RtpPacket(0, n, n * 160, 9, enc.encode(frames[n])), n * TICK)
        got.append(mixer.mix(n * TICK + 0.01))
    audio = [f for f in got if f.active]
    assert len(audio) >= 27
    np.testing.assert_array_equal(audio[0].pcm, dec.decode(enc.encode(frames[0])))


def test_sum_beyond_full_scale_is_soft_clipped_not_wrapped():
    a = np.full(160, 30000, np.int16)
    b = np.full(160, 20000, np.int16)
    c = np.full(160, -30000, np.int16)
    loud = mix_pcm([a, b])
    assert loud.dtype == np.int16 and loud.min() > 26000 and loud.max() <= 32767
    neg = mix_pcm([c, c])
    assert neg.max() < -26000
    small = mix_pcm([np.full(160, 100, np.int16), np.full(160, -40, np.int16)])
    assert (small == 60).all()


def test_silent_streams_are_forgotten_after_the_timeout():
    mixer = Mixer(
        lambda: create_decoder("PCMU"), clock_rate=8000, frame_samples=160, stream_timeout=1.0
    )
    enc = create_encoder("PCMU")
    for n in range(10):
        mixer.push(RtpPacket(0, n, n * 160, 5, enc.encode(np.zeros(160, np.int16))), n * TICK, 90)
    for n in range(10, 200):
        mixer.mix(n * TICK)
    assert mixer.streams == {}


def test_quiet_streams_are_not_decoded_after_a_short_hangover():
    mixer = Mixer(lambda: create_decoder("PCMU"), clock_rate=8000, frame_samples=160)
    enc = create_encoder("PCMU")
    talk = sine_frames(500, 8000, 100)
    for n in range(100):
        # Loud for 1 s, then room noise at -90 dBov for 1 s.
        level = 20 if n < 50 else 90
        mixer.push(RtpPacket(0, n, n * 160, 3, enc.encode(talk[n])), n * TICK, level)
        mixer.mix(n * TICK + 0.01)
        if n == 49:
            decoded_while_talking = mixer.decoded_frames
    assert decoded_while_talking >= 45
    # The hangover keeps ~25 quiet frames decoded, then decoding stops.
    assert 20 <= mixer.decoded_frames - decoded_while_talking <= 30


def test_single_stream_playout_follows_a_new_ssrc():
    from dialbridge.media.mixer import SingleStreamPlayout

    leg = SingleStreamPlayout(lambda: create_decoder("PCMU"), clock_rate=8000, frame_samples=160)
    enc = create_encoder("PCMU")
    a, b = sine_frames(500, 8000, 40), sine_frames(1500, 8000, 40)
    sources = []
    for n in range(80):
        ssrc, frames = (1, a) if n < 40 else (2, b)
        leg.push(RtpPacket(0, n, 1000 * ssrc + n * 160, ssrc, enc.encode(frames[n % 40])), n * TICK)
        sources.append(leg.mix(n * TICK + 0.01).sources)
    assert sources[10:38] == [(1,)] * 28
    assert sources[45:] == [(2,)] * 35
    assert list(leg.streams) == [2]
