"""The C jitter buffer (``media._dataplane.JitterBuffer``) against its reference, jitter.py.

The differential tests feed both implementations the same packets and ticks and require the
same frames (kind, level, samples), the same concealment requests and the same statistics at
every step: the evidence that the port keeps every rule of jitter.py. The other tests cover
what only the C side promises: no input crashes it, and its bounded storage.
"""

from __future__ import annotations

import gc
import random

import numpy as np
import pytest

from dialbridge.media import jitter
from dialbridge.media.jitter import Frame, FrameKind, JitterStats
from dialbridge.media.rtp import RtpPacket

native = pytest.importorskip(
    "dialbridge.media._dataplane", reason="the C data plane is not built (setup.py build_ext)"
)

TICK = 0.020


class RecordingDecoder:
    """Deterministic codec stand-in whose output shows which packet played and which payload
    concealment was given (so FEC hand-over is compared too).

    A payload is ``index (4 bytes) + amplitude (2 bytes)``; it decodes to ``n_samples``
    samples, the first the index and the rest the amplitude (so quiet frames exist for the
    drop/insert rule). A payload starting with 0xFF is corrupt (decode raises).
    """

    def __init__(self, n_samples: int = 160) -> None:
        self.n_samples = n_samples
        self.conceal_calls: list[bytes | None] = []

    def decode(self, payload: bytes) -> np.ndarray:
        if payload[0] == 0xFF:
            raise ValueError("corrupt payload")
        index = int.from_bytes(payload[:4], "big") & 0x7FFF
        amplitude = int.from_bytes(payload[4:6], "big", signed=True) if len(payload) >= 6 else 0
        pcm = np.full(self.n_samples, amplitude, dtype=np.int16)
        pcm[0] = index
        return pcm

    def conceal(self, next_payload: bytes | None = None) -> np.ndarray:
        self.conceal_calls.append(next_payload)
        fill = -1 if next_payload is None else -2 - (next_payload[-1] if next_payload else 0)
        return np.full(self.n_samples, fill, dtype=np.int16)


def payload_for(k: int, amplitude: int) -> bytes:
    return (k & 0xFFFFFFFF).to_bytes(4, "big") + amplitude.to_bytes(2, "big", signed=True)


def both(**kw):
    n_samples = kw.pop("n_samples", 160)
    decoders = (RecordingDecoder(n_samples), RecordingDecoder(n_samples))
    opts = {"clock_rate": 8000, "frame_samples": 160, **kw}
    return (
        jitter.JitterBuffer(decoders[0], **opts),
        native.JitterBuffer(decoders[1], **opts),
        decoders,
    )


def assert_same_frame(a: Frame, b: Frame, where: str) -> None:
    assert (a.kind, a.level) == (b.kind, b.level), where
    if a.pcm is None or b.pcm is None:
        assert a.pcm is None and b.pcm is None, where
    else:
        np.testing.assert_array_equal(a.pcm, b.pcm, err_msg=where)


def assert_same_state(py, c, where: str) -> None:
    assert py.stats == c.stats, where
    assert (py.target_frames, py.playing, py.ssrc, py.last_arrival) == (
        c.target_frames,
        c.playing,
        c.ssrc,
        c.last_arrival,
    ), where


def network(
    seed: int,
    *,
    seconds: float,
    loss: float,
    dup: float,
    spread: float,
    ptime_ms: int = 20,
    skew: float = 1.0,
    talk_spurts: bool = True,
    ts_per_ms: int = 8,
) -> list[tuple[float, tuple]]:
    """Arrivals (time, push_payload args) of one sender through a lossy, reordering network.
    Amplitude alternates between speech (loud) and pauses (quiet) every couple of seconds."""
    rng = random.Random(seed)
    arrivals = []
    n_packets = int(seconds * 1000 / ptime_ms / skew) + 1
    for k in range(n_packets):
        if rng.random() < loss:
            continue
        loud = (k * ptime_ms // 1500) % 2 == 0 if talk_spurts else True
        amplitude = rng.randint(2000, 9000) if loud else rng.randint(-300, 300)
        level = rng.randint(20, 60) if loud else 127
        args = (
            0xCAFE,
            k & 0xFFFF,
            (k * ptime_ms * ts_per_ms) & 0xFFFFFFFF,
            payload_for(k, amplitude),
            level,
        )
        sent = k * ptime_ms / 1000 * skew
        for _ in range(2 if rng.random() < dup else 1):
            arrivals.append((sent + 0.030 + rng.uniform(0, spread), args))
    arrivals.sort(key=lambda a: a[0])
    return arrivals


def run_differential(py, c, arrivals, *, seconds: float, decode_p: float = 1.0, seed: int = 0):
    """Drive both buffers tick by tick; compare every push result, frame and state."""
    rng = random.Random(seed)
    i = 0
    frames = 0
    for n in range(1, int(seconds / TICK) + 1):
        now = n * TICK + 0.0005
        while i < len(arrivals) and arrivals[i][0] <= now:
            at, (ssrc, seq, ts, payload, level) = arrivals[i]
            r_py = py.push_payload(ssrc, seq, ts, payload, at, level)
            r_c = c.push_payload(ssrc, seq, ts, payload, at, level)
            assert r_py == r_c, f"push {i}"
            i += 1
        decode = rng.random() < decode_p
        if rng.random() < 0.5:
            assert py.peek_level(now) == c.peek_level(now), f"peek at tick {n}"
        fa, fb = py.pop(now, decode), c.pop(now, decode)
        assert_same_frame(fa, fb, f"tick {n}")
        assert_same_state(py, c, f"tick {n}")
        frames += 1
    return frames


def test_same_frames_as_jitter_py_over_a_minute_of_lossy_duplicating_reordering_network():
    py, c, (dpy, dc) = both()
    arrivals = network(7, seconds=60, loss=0.05, dup=0.02, spread=0.060)
    assert run_differential(py, c, arrivals, seconds=60) == 3000
    stats = c.stats
    # The scenario did exercise the rules being compared.
    assert stats.concealed > 50 and stats.duplicates > 20 and stats.played > 2700
    assert dpy.conceal_calls == dc.conceal_calls
    assert any(p is not None for p in dc.conceal_calls)  # FEC hand-over happened


@pytest.mark.parametrize("skew", [1.002, 0.998])
def test_same_drop_and_insert_decisions_under_clock_skew_with_quiet_pauses(skew):
    py, c, (dpy, dc) = both()
    arrivals = network(3, seconds=60, loss=0.01, dup=0.01, spread=0.030, skew=skew)
    run_differential(py, c, arrivals, seconds=60)
    stats = c.stats
    assert stats.dropped_for_depth + stats.inserted_for_depth >= 3
    assert dpy.conceal_calls == dc.conceal_calls


def test_same_frames_when_the_mixer_skips_decoding_some_ticks():
    py, c, _ = both()
    arrivals = network(11, seconds=30, loss=0.05, dup=0.02, spread=0.080)
    run_differential(py, c, arrivals, seconds=30, decode_p=0.6, seed=5)
    assert c.stats.played > 1000


@pytest.mark.parametrize("ptime_ms", [10, 30, 40, 60])
def test_same_frames_for_packets_that_are_not_20_ms(ptime_ms):
    n = 8 * ptime_ms
    py, c, (dpy, dc) = both(n_samples=n)
    arrivals = network(ptime_ms, seconds=20, loss=0.03, dup=0.02, spread=0.040, ptime_ms=ptime_ms)
    run_differential(py, c, arrivals, seconds=20, decode_p=0.8, seed=ptime_ms)
    assert c.stats.played > 0.8 * 20_000 / ptime_ms
    assert dpy.conceal_calls == dc.conceal_calls


def test_same_frames_for_opus_timestamps_at_48_khz():
    py, c, (dpy, dc) = both(clock_rate=48000, frame_samples=960)
    arrivals = network(2, seconds=30, loss=0.05, dup=0.02, spread=0.060, ts_per_ms=48)
    run_differential(py, c, arrivals, seconds=30)
    assert c.stats.concealed > 0 and dpy.conceal_calls == dc.conceal_calls


def test_same_reanchors_resyncs_and_corrupt_payloads():
    """A delay step (late run → re-anchor), a timestamp rebase, an SSRC change and corrupt
    payloads in one stream."""
    py, c, (dpy, dc) = both()
    rng = random.Random(9)
    arrivals = []
    for k in range(1500):
        sent = k * TICK + (0.25 if k >= 400 else 0.0)  # a 250 ms delay step at packet 400
        ts = k * 160 + (8000 * 90 if k >= 800 else 0)  # the sender rebases at packet 800
        ssrc = 0xCAFE if k < 1100 else 0xBEEF
        payload = payload_for(k, rng.randint(-9000, 9000))
        if rng.random() < 0.02:
            payload = b"\xff" + payload[1:]
        arrivals.append(
            (sent + rng.uniform(0.03, 0.05), (ssrc, k & 0xFFFF, ts & 0xFFFFFFFF, payload, 40))
        )
    arrivals.sort(key=lambda a: a[0])
    run_differential(py, c, arrivals, seconds=31)
    stats = c.stats
    assert stats.reanchors >= 1 and stats.resyncs >= 2
    assert dpy.conceal_calls == dc.conceal_calls and dc.conceal_calls.count(None) > 0


@pytest.mark.parametrize("seed", range(6))
def test_same_frames_for_chaotic_input(seed):
    """Random SSRC switches, sequence/timestamp jumps, duplicates, empty payloads, arrival
    times out of order and random decode flags: still the same frames."""
    rng = random.Random(seed)
    py, c, (dpy, dc) = both(max_plc_frames=rng.randint(0, 6))
    ts = rng.getrandbits(32)
    seq = rng.getrandbits(16)
    ssrc = 1
    now = 0.0
    for step in range(3000):
        now += TICK
        for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
            r = rng.random()
            if r < 0.01:
                ssrc = rng.choice((1, 2, 3))
            elif r < 0.02:
                ts += rng.randint(-300_000, 300_000)
            elif r < 0.04:
                seq += rng.randint(-50, 50)
            d = rng.choice((-2, -1, 0, 1, 1, 1, 1, 2, 5))
            ts += d * 160
            seq += 1 if rng.random() < 0.9 else rng.randint(0, 3)
            payload = b"" if rng.random() < 0.02 else payload_for(step, rng.randint(-900, 900))
            at = now + rng.uniform(-0.05, 0.05)
            level = rng.randint(0, 127)
            args = (ssrc, seq & 0xFFFF, ts & 0xFFFFFFFF, payload, at, level)
            assert py.push_payload(*args) == c.push_payload(*args), step
        decode = rng.random() < 0.7
        assert py.peek_level(now) == c.peek_level(now), step
        assert_same_frame(py.pop(now, decode), c.pop(now, decode), f"step {step}")
        assert_same_state(py, c, f"step {step}")
    assert dpy.conceal_calls == dc.conceal_calls
    assert c.stats.resyncs > 0 and c.stats.played > 100


# -- what only the C buffer promises ---------------------------------------------------------


class AnyLengthDecoder:
    """Decodes to a length chosen by the payload (0 to 2000 samples), conceals likewise."""

    def decode(self, payload: bytes) -> np.ndarray:
        n = (payload[0] * 8) if payload else 0
        return np.arange(n, dtype=np.int16)

    def conceal(self, next_payload: bytes | None = None) -> np.ndarray:
        return np.full(len(next_payload or b"") % 300, 3, dtype=np.int16)


@pytest.mark.parametrize("seed", range(4))
def test_random_input_never_crashes_and_every_pop_is_one_frame(seed):
    rng = random.Random(seed)
    opts = rng.choice(
        [
            {"clock_rate": 8000, "frame_samples": 160},
            {"clock_rate": 48000, "frame_samples": 960},
            {"clock_rate": 16000, "frame_samples": 320, "pcm_samples": 320},
        ]
    )
    jb = native.JitterBuffer(AnyLengthDecoder(), max_plc_frames=rng.randint(0, 8), **opts)
    for step in range(20_000):
        if rng.random() < 0.6:
            size = rng.choice((0, 1, 2, 5, 160, 1500, 1501, 2000))
            jb.push_payload(
                rng.choice((1, 2, 0xFFFFFFFF)),
                rng.getrandbits(16),
                rng.getrandbits(32) if rng.random() < 0.1 else (step * 160 + rng.randint(-3, 3)),
                rng.randbytes(size),
                rng.uniform(-10, 1000),
                rng.randint(-5, 200),
            )
        else:
            frame = jb.pop(rng.uniform(-10, 1000), rng.random() < 0.8)
            assert frame.kind in FrameKind
            assert frame.pcm is None or frame.pcm.shape == (jb.pcm_samples,)
    assert isinstance(jb.stats, JitterStats) and jb.stats.received > 0


def test_non_finite_times_do_not_poison_the_buffer():
    jb = native.JitterBuffer(AnyLengthDecoder(), clock_rate=8000, frame_samples=160)
    for k, now in enumerate((0.0, float("nan"), float("inf"), -float("inf"), 0.04)):
        jb.push_payload(5, k, k * 160, bytes([20]), now)
    assert np.isfinite(jb.stats.jitter) and jb.target_frames >= jb.min_frames
    assert jb.pop(float("nan")).pcm.shape == (160,)


class FailingDecoder:
    def __init__(self) -> None:
        self.concealed = 0

    def decode(self, payload: bytes) -> np.ndarray:
        raise RuntimeError("corrupt")

    def conceal(self, next_payload: bytes | None = None) -> np.ndarray:
        self.concealed += 1
        return np.full(160, 7, np.int16)


def test_a_decoder_raising_on_decode_is_concealed_and_playout_goes_on():
    dec = FailingDecoder()
    jb = native.JitterBuffer(dec, clock_rate=8000, frame_samples=160)
    for k in range(10):
        jb.push_payload(1, k, k * 160, b"x", k * TICK)
    frames = [jb.pop(0.2 + n * TICK) for n in range(10)]
    assert [f.kind for f in frames] == [FrameKind.AUDIO] * 10
    assert all((f.pcm == 7).all() for f in frames)
    assert dec.concealed == 10 and jb.stats.played == 10


class BrokenConceal(FailingDecoder):
    def conceal(self, next_payload: bytes | None = None) -> np.ndarray:
        raise KeyError("no plc")


def test_an_exception_from_conceal_propagates_as_in_jitter_py():
    jb = native.JitterBuffer(BrokenConceal(), clock_rate=8000, frame_samples=160)
    jb.push_payload(1, 0, 0, b"x", 0.0)
    with pytest.raises(KeyError):
        jb.pop(1.0)
    jb.push_payload(1, 1, 160, b"x", 1.0)  # still usable afterwards
    assert jb.stats.received == 2


def test_decoder_output_of_another_dtype_is_converted_to_int16():
    class FloatDecoder:
        def decode(self, payload):
            return np.full(160, 12.0)

        def conceal(self, next_payload=None):
            return [1] * 160

    jb = native.JitterBuffer(FloatDecoder(), clock_rate=8000, frame_samples=160, min_delay=0)
    jb.push_payload(1, 0, 0, b"x", 0.0)
    first = jb.pop(0.0)
    jb.push_payload(1, 2, 320, b"x", 0.02)
    lost = jb.pop(0.02)
    assert first.pcm.dtype == np.int16 and (first.pcm == 12).all()
    assert lost.kind is FrameKind.PLC and (lost.pcm == 1).all()


def test_oversized_payloads_are_dropped_and_a_full_buffer_drops_new_packets():
    jb = native.JitterBuffer(AnyLengthDecoder(), clock_rate=8000, frame_samples=160)
    assert jb.push_payload(1, 0, 0, bytes(1501), 0.0) is False
    assert jb.stats.empty == 1
    # Not playing yet, so nothing is late: only capacity (256 packets) stops the queue.
    accepted = sum(jb.push_payload(1, k, k * 160, b"\x01", 0.0) for k in range(300))
    assert accepted == 256 and jb.stats.late == 300 - 256


def test_the_buffer_and_its_decoder_are_collected_in_a_reference_cycle():
    class SelfReferencing(AnyLengthDecoder):
        pass

    dec = SelfReferencing()
    dec.jb = native.JitterBuffer(dec, clock_rate=8000, frame_samples=160)
    probe = [0]

    class Marker:
        def __del__(self):
            probe[0] += 1

    dec.marker = Marker()
    del dec
    gc.collect()
    assert probe == [1]


def test_constructor_rejects_missing_or_impossible_parameters():
    with pytest.raises(TypeError):
        native.JitterBuffer(AnyLengthDecoder(), clock_rate=8000)
    with pytest.raises(ValueError):
        native.JitterBuffer(AnyLengthDecoder(), clock_rate=8000, frame_samples=160, pcm_samples=0)
    jb = native.JitterBuffer(AnyLengthDecoder(), clock_rate=8000, frame_samples=160)
    assert (jb.ssrc, jb.last_arrival, jb.playing) == (None, None, False)
    py = jitter.JitterBuffer(AnyLengthDecoder(), clock_rate=8000, frame_samples=160)
    assert (jb.min_frames, jb.max_frames, jb.spf, jb.pcm_samples) == (
        py.min_frames,
        py.max_frames,
        py.spf,
        py.pcm_samples,
    )


def test_push_reads_the_rtp_packet_fields():
    jb = native.JitterBuffer(AnyLengthDecoder(), clock_rate=8000, frame_samples=160)
    assert jb.push(RtpPacket(0, 65535, 0xFFFFFFFF, 0x12345678, b"\x14"), 1.5, level=33) is True
    assert jb.push(RtpPacket(0, 65535, 0xFFFFFFFF, 0x12345678, b"\x14"), 1.5) is False
    assert jb.ssrc == 0x12345678 and jb.last_arrival == 1.5
    assert jb.peek_level(1.5 + 0.1) == 33


def test_overlapping_timestamps_from_the_network_play_on_without_raising():
    """20 ms packets whose timestamps advance by only 100 units leave packets behind playout;
    jitter.py then raises ValueError (negative silence length) when max_plc_frames is 0. The C
    buffer plays on."""

    class Zeros:
        def decode(self, payload):
            return np.zeros(160, np.int16)

        def conceal(self, next_payload=None):
            return np.zeros(160, np.int16)

    jb = native.JitterBuffer(Zeros(), clock_rate=8000, frame_samples=160, max_plc_frames=0)
    for k in range(6):
        jb.push_payload(1, k, k * 100, b"x", 0.0)
    jb.push_payload(1, 9, 2000, b"x", 0.0)
    frames = [jb.pop(0.1 + n * TICK) for n in range(12)]
    assert all(f.pcm.shape == (160,) for f in frames)
    assert jb.stats.played >= 6  # the overlapping packets, even those left behind playout
