"""Multi-SSRC mixing: N-loudest selection by RFC 6464 level before decoding, clipping.

Every behaviour test runs twice (``make_mixer``): against the Python classes
(``mixer.Mixer`` / ``mixer.SingleStreamPlayout``) and against their C port
(``_dataplane.Playout``, built from ``media/_native/mixer.c``), which takes a codec name
instead of a decoder factory. Tests that look at Python internals stay Python-only; the
differential tests at the end feed both the same packets and compare what they play.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from dialbridge.media.codecs import create_decoder, create_encoder
from dialbridge.media.mixer import Mixer, SingleStreamPlayout, mix_pcm
from dialbridge.media.rtp import RtpPacket
from tests.media.conftest import native_dataplane_or_skip

TICK = 0.020
FREQS = [400.0, 700.0, 1000.0, 1300.0, 1600.0]

MakeMixer = Callable[..., object]


def python_mixer(codec: str, *, single: bool = False, **opts) -> Mixer | SingleStreamPlayout:
    playout = SingleStreamPlayout if single else Mixer
    return playout(lambda: create_decoder(codec), **opts)


@pytest.fixture(params=["python", "native"])
def make_mixer(request: pytest.FixtureRequest) -> MakeMixer:
    """``make_mixer(codec, single=False, clock_rate=..., frame_samples=..., **opts)``: a
    Mixer (or SingleStreamPlayout when ``single``) in Python, or the C ``Playout``."""
    if request.param == "python":
        return python_mixer
    dataplane = native_dataplane_or_skip()

    def native_mixer(codec: str, *, single: bool = False, **opts):
        return dataplane.Playout(codec, single=single, **opts)

    return native_mixer


def dbov_level(pcm: np.ndarray) -> int:
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    if rms < 1:
        return 127
    return int(min(127, max(0, round(-20 * np.log10(rms / 32768)))))


def sine_frames(freq: float, amplitude: float, n: int) -> list[np.ndarray]:
    t = np.arange(n * 160) / 8000.0
    x = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [x[i * 160 : (i + 1) * 160] for i in range(n)]


def run_five_streams(
    make_mixer: MakeMixer, amplitudes: list[float], ticks: int = 150
) -> tuple[Mixer, np.ndarray]:
    mixer = make_mixer("opus", clock_rate=48000, frame_samples=960, max_streams=3)
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


def test_only_the_three_loudest_of_five_streams_are_heard(make_mixer):
    # Louder streams first would be too easy; shuffle loudness across frequencies.
    amplitudes = [2000.0, 9000.0, 500.0, 6000.0, 4000.0]
    mixer, mixed = run_five_streams(make_mixer, amplitudes)
    loud = {FREQS[1], FREQS[3], FREQS[4]}
    energies = {f: band_energy(mixed, f) for f in FREQS}
    weakest_loud = min(energies[f] for f in loud)
    for f in set(FREQS) - loud:
        assert energies[f] < weakest_loud / 30, (f, energies)  # > 29 dB below
    assert mixer.decoded_frames <= 3 * 150
    assert mixer.skipped_frames >= 2 * 120


def test_selection_follows_the_levels_when_the_talker_changes(make_mixer):
    mixer = make_mixer("PCMU", clock_rate=8000, frame_samples=160, max_streams=1)
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


def test_streams_at_level_127_are_never_decoded(make_mixer):
    mixer = make_mixer("PCMU", clock_rate=8000, frame_samples=160)
    enc = create_encoder("PCMU")
    for n in range(50):
        mixer.push(RtpPacket(0, n, n * 160, 7, enc.encode(np.zeros(160, np.int16))), n * TICK, 127)
        frame = mixer.mix(n * TICK + 0.01)
        assert not frame.active and frame.sources == ()
    assert mixer.decoded_frames == 0


def test_single_stream_without_levels_passes_through_unchanged(make_mixer):
    mixer = make_mixer("PCMU", clock_rate=8000, frame_samples=160)
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


def test_a_mixed_sum_beyond_full_scale_is_soft_clipped_not_wrapped(make_mixer):
    mixer = make_mixer("PCMU", clock_rate=8000, frame_samples=160, max_streams=3)
    enc = create_encoder("PCMU")
    loud = enc.encode(np.full(160, 30000, np.int16))
    small = [enc.encode(np.full(160, v, np.int16)) for v in (96, -40)]
    frames = []
    for n in range(20):
        now = n * TICK
        mixer.push(RtpPacket(0, n, n * 160, 1, loud), now, level=0)
        mixer.push(RtpPacket(0, n, n * 160, 2, loud), now, level=0)
        frames.append(mixer.mix(now + 0.01))
    loud_mix = [f.pcm for f in frames if len(f.sources) == 2]
    assert len(loud_mix) >= 15
    assert all(f.dtype == np.int16 and f.min() > 26000 and f.max() <= 32767 for f in loud_mix)
    quiet = make_mixer("PCMU", clock_rate=8000, frame_samples=160, max_streams=3)
    dec = create_decoder("PCMU")
    expected = int(dec.decode(small[0])[0]) + int(dec.decode(small[1])[0])
    out = []
    for n in range(20):
        now = n * TICK
        for ssrc, payload in enumerate(small):
            quiet.push(RtpPacket(0, n, n * 160, 10 + ssrc, payload), now, level=40)
        out.append(quiet.mix(now + 0.01))
    sums = [f.pcm for f in out if len(f.sources) == 2]
    assert sums and all((f == expected).all() for f in sums)


def test_silent_streams_are_forgotten_after_the_timeout(make_mixer):
    mixer = make_mixer("PCMU", clock_rate=8000, frame_samples=160, stream_timeout=1.0)
    enc = create_encoder("PCMU")
    for n in range(10):
        mixer.push(RtpPacket(0, n, n * 160, 5, enc.encode(np.zeros(160, np.int16))), n * TICK, 90)
    for n in range(10, 200):
        mixer.mix(n * TICK)
    assert mixer.streams == {}


def test_quiet_streams_are_not_decoded_after_a_short_hangover(make_mixer):
    mixer = make_mixer("PCMU", clock_rate=8000, frame_samples=160)
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


def test_single_stream_playout_follows_a_new_ssrc(make_mixer):
    leg = make_mixer("PCMU", single=True, clock_rate=8000, frame_samples=160)
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


# -- the C port plays exactly what the Python mixer plays --------------------------------------


def conference_traffic(codec: str, seed: int, ticks: int) -> list[tuple]:
    """Five SSRCs over a bad network: talkers taking turns (levels follow the audio), a
    muted participant at level 127, one stream without levels, one that leaves halfway and
    one that joins late; 4 % loss, 2 % duplicates, up to 60 ms of reordering.
    Returns (arrival, ssrc, seq, ts, payload, level) sorted by arrival."""
    rng = random.Random(seed)
    step = 960 if codec == "opus" else 160
    packets = []
    for i in range(5):
        ssrc = 0x5000 + i
        enc = create_encoder(codec) if codec != "opus" else create_encoder("opus", bitrate=24000)
        first, last = (0, ticks) if i < 3 else ((0, ticks // 2) if i == 3 else (ticks // 3, ticks))
        t = np.arange(160) / 8000.0
        for k in range(first, last):
            talking = (k // 60) % 3 == i % 3
            amplitude = 9000.0 if talking else 250.0
            if i == 4 and k % 100 < 40:
                pcm = np.zeros(160, np.int16)
            else:
                pcm = (amplitude * np.sin(2 * np.pi * FREQS[i] * (t + k * 0.02))).astype(np.int16)
            level = dbov_level(pcm)
            if i == 2:
                level = None  # a sender without RFC 6464
            if rng.random() < 0.04:
                continue
            arrival = k * TICK + 0.01 + rng.uniform(0.0, 0.06)
            payload = enc.encode(pcm)
            packets.append(
                (arrival, ssrc, k & 0xFFFF, (1000 * i + k * step) & 0xFFFFFFFF, payload, level)
            )
            if rng.random() < 0.02:
                packets.append(
                    (
                        arrival + 0.005,
                        ssrc,
                        k & 0xFFFF,
                        (1000 * i + k * step) & 0xFFFFFFFF,
                        payload,
                        level,
                    )
                )
    packets.sort(key=lambda p: p[0])
    return packets


def play_both(python, native, packets: list[tuple], ticks: int) -> int:
    """Feed both playouts the same packets; assert every tick plays the same. Returns the
    number of ticks that carried audio."""
    i = 0
    audible = 0
    for n in range(ticks):
        now = n * TICK + 0.005
        while i < len(packets) and packets[i][0] <= now:
            arrival, ssrc, seq, ts, payload, level = packets[i]
            assert python.push_payload(ssrc, seq, ts, payload, arrival, level) == bool(
                native.push_payload(ssrc, seq, ts, payload, arrival, level)
            ), (n, packets[i][:4])
            i += 1
        a, b = python.mix(now), native.mix(now)
        assert (a.active, a.sources) == (b.active, b.sources), n
        # The soft knee is float32 tanh in both; allow one LSB where libm rounds differently.
        np.testing.assert_allclose(a.pcm, b.pcm, atol=1, rtol=0, err_msg=f"tick {n}")
        audible += a.active
    assert python.decoded_frames == native.decoded_frames
    assert python.skipped_frames == native.skipped_frames
    assert set(python.streams) == set(native.streams)
    for ssrc, jb in python.streams.items():
        assert jb.stats == native.streams[ssrc].stats, ssrc
    return audible


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "opus"])
def test_native_mixer_plays_what_the_python_mixer_plays(codec):
    dataplane = native_dataplane_or_skip()
    ticks = 400
    rate, step = (48000, 960) if codec == "opus" else (8000, 160)
    opts = {"clock_rate": rate, "frame_samples": step, "max_streams": 2, "stream_timeout": 2.0}
    python = python_mixer(codec, **opts)
    native = dataplane.Playout(codec, single=False, **opts)
    audible = play_both(python, native, conference_traffic(codec, 11, ticks), ticks)
    assert audible > ticks * 0.8
    assert 0x5003 not in python.streams  # left halfway: forgotten after the timeout


@pytest.mark.parametrize("codec", ["PCMU", "opus"])
def test_native_single_stream_playout_plays_what_the_python_one_plays(codec):
    dataplane = native_dataplane_or_skip()
    rng = random.Random(4)
    rate, step = (48000, 960) if codec == "opus" else (8000, 160)
    enc = create_encoder(codec)
    t = np.arange(160) / 8000.0
    packets = []
    for k in range(300):
        # A re-originated stream at 2 s (new SSRC, new timeline), a timestamp jump at 4 s.
        ssrc = 0x77 if k < 100 else 0x78
        ts = (k * step + (0 if k < 200 else 5 * rate)) & 0xFFFFFFFF
        pcm = (6000 * np.sin(2 * np.pi * 500 * (t + k * 0.02))).astype(np.int16)
        if rng.random() < 0.05:
            continue
        packets.append((k * TICK + rng.uniform(0.0, 0.05), ssrc, k, ts, enc.encode(pcm), None))
    packets.sort(key=lambda p: p[0])
    opts = {"clock_rate": rate, "frame_samples": step}
    python = python_mixer(codec, single=True, **opts)
    native = dataplane.Playout(codec, single=True, **opts)
    assert play_both(python, native, packets, 310) > 250
    python.remove(0x78)
    native.remove(0x78)
    assert python.streams == {} and native.streams == {}


def test_a_stream_that_stops_sending_gives_its_place_to_the_next_talker(make_mixer):
    # Found here: a picked stream that went silent kept its rank with its last level until
    # the 5 s stream timeout, and blocked a place (mixer.py and mixer.c alike).
    mixer = make_mixer("PCMU", clock_rate=8000, frame_samples=160, max_streams=1)
    enc = create_encoder("PCMU")
    a, b = sine_frames(500, 8000, 300), sine_frames(1500, 8000, 300)
    sources = []
    for n in range(150):
        now = n * TICK
        if n < 50:  # A talks for a second, then mutes (a muted browser sends nothing)
            mixer.push(RtpPacket(0, n, n * 160, 1, enc.encode(a[n])), now, level=10)
        if n >= 60:  # B starts talking, less loud than A was
            mixer.push(RtpPacket(0, n, n * 160, 2, enc.encode(b[n])), now, level=30)
        sources.append(mixer.mix(now + 0.01).sources)
    assert sources[10:45] == [(1,)] * 35
    # B is heard once its jitter buffer has started (and A's concealment is over).
    assert sources[75:150] == [(2,)] * 75
