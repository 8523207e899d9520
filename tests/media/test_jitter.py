"""Jitter buffer behaviour under a simulated network, driven by a fake clock (no sleeping).

Every test runs against both implementations: the reference ``media.jitter.JitterBuffer`` and
its C port ``media._dataplane.JitterBuffer`` (skipped only when the extension is not built).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from dialbridge.media.jitter import FrameKind, JitterBuffer
from dialbridge.media.rtp import RtpPacket

try:
    from dialbridge.media._dataplane import JitterBuffer as NativeJitterBuffer
except ImportError as exc:  # the C data plane is optional (setup.py build_ext)
    NativeJitterBuffer = None
    NATIVE_MISSING = f"dialbridge.media._dataplane is not built ({exc})"


@pytest.fixture(params=["python", "native"])
def jb_class(request):
    """The jitter buffer class under test: the Python reference, then its C port."""
    if request.param == "python":
        return JitterBuffer
    if NativeJitterBuffer is None:
        pytest.skip(NATIVE_MISSING)
    return NativeJitterBuffer


SPF = 160  # RTP units per 20 ms at 8 kHz
TICK = 0.020


class IndexDecoder:
    """Decodes a payload holding a frame index into a frame filled with that index.

    Codec behaviour is irrelevant here; what matters is which packet was played and when
    concealment (and with which next payload) was asked for.
    """

    def __init__(self) -> None:
        self.conceal_calls: list[bytes | None] = []

    def decode(self, payload: bytes) -> np.ndarray:
        return np.full(160, int.from_bytes(payload, "big") & 0x7FFF, dtype=np.int16)

    def conceal(self, next_payload: bytes | None = None) -> np.ndarray:
        self.conceal_calls.append(next_payload)
        return np.full(160, -1, dtype=np.int16)


def packet(k: int, *, ssrc: int = 0x1234, seq0: int = 0, ts0: int = 0) -> RtpPacket:
    return RtpPacket(
        payload_type=0,
        sequence_number=(seq0 + k) & 0xFFFF,
        timestamp=(ts0 + k * SPF) & 0xFFFFFFFF,
        ssrc=ssrc,
        payload=k.to_bytes(4, "big"),
    )


def new_buffer(jb_class, **kw) -> tuple[JitterBuffer, IndexDecoder]:
    dec = IndexDecoder()
    return jb_class(dec, clock_rate=8000, frame_samples=SPF, **kw), dec


def run_network(
    jb: JitterBuffer,
    *,
    seconds: float,
    loss: float = 0.0,
    dup: float = 0.0,
    jitter: float = 0.0,
    skew: float = 1.0,
    seed: int = 1,
    **packet_kw,
) -> list[tuple[float, object]]:
    """Send one packet per 20 ms of the *sender's* clock (``skew`` times ours) through a network
    with random loss, duplication and delay spread; pop once per 20 ms of our clock."""
    rng = random.Random(seed)
    arrivals: list[tuple[float, RtpPacket]] = []
    n_packets = int(seconds / TICK / skew) + 1
    for k in range(n_packets):
        if rng.random() < loss:
            continue
        sent = k * TICK * skew
        copies = 2 if rng.random() < dup else 1
        for _ in range(copies):
            arrivals.append((sent + 0.030 + rng.uniform(0, jitter), packet(k, **packet_kw)))
    arrivals.sort(key=lambda a: a[0])
    out = []
    i = 0
    ticks = int(seconds / TICK)
    for n in range(1, ticks + 1):
        now = n * TICK + 0.0005
        while i < len(arrivals) and arrivals[i][0] <= now:
            jb.push(arrivals[i][1], arrivals[i][0])
            i += 1
        out.append((now, jb.pop(now)))
    return out


def test_in_order_stream_plays_every_packet_once_in_order(jb_class):
    jb, _ = new_buffer(jb_class)
    out = run_network(jb, seconds=4)
    played = [int(f.pcm[0]) for _, f in out if f.kind is FrameKind.AUDIO]
    assert played == list(range(played[0], played[0] + len(played)))
    assert played[0] == 0 and len(played) >= 195
    assert jb.stats.concealed == 0 and jb.stats.late == 0


def test_lossy_reordered_duplicated_stream_plays_continuously_without_drift_for_ten_minutes(
    jb_class,
):
    jb, dec = new_buffer(jb_class)
    out = run_network(jb, seconds=600, loss=0.05, dup=0.02, jitter=0.060)
    frames = [f for _, f in out]
    assert len(frames) == 30_000
    assert all(f.pcm is not None and f.pcm.shape == (160,) for f in frames)
    assert jb.stats.concealed > 0.03 * 30_000 and dec.conceal_calls
    assert jb.stats.duplicates > 0
    # Reordering happened (60 ms spread over 20 ms spacing) yet playout stayed in order.
    played = [int(f.pcm[0]) for f in frames if f.kind is FrameKind.AUDIO]
    assert all(b > a for a, b in zip(played, played[1:], strict=False))
    # No drift: the playout delay (our clock minus the sender's timestamp) is the same at the
    # end as after the first minute, and within the configured bounds.
    delays = [now - int(f.pcm[0]) * TICK for now, f in out if f.kind is FrameKind.AUDIO]
    early, late = np.median(delays[2000:4000]), np.median(delays[-2000:])
    assert abs(late - early) < 0.045
    assert 0.03 < late < 0.03 + 0.300 + 0.02
    # Almost everything that was not lost got played: few late drops for a 60 ms spread.
    assert jb.stats.played > 0.93 * 30_000


def test_sender_clock_skew_is_absorbed_by_dropping_or_inserting_frames(jb_class):
    for skew in (1.001, 0.999):  # sender 0.1 % slower, then faster, than our tick
        jb, _ = new_buffer(jb_class)
        out = run_network(jb, seconds=600, jitter=0.010, skew=skew)
        delays = [now - int(f.pcm[0]) * TICK * skew for now, f in out if f.kind is FrameKind.AUDIO]
        assert abs(np.median(delays[-500:]) - np.median(delays[500:1000])) < 0.045, skew
        assert max(delays[1000:]) < 0.35
        adjustments = jb.stats.dropped_for_depth + jb.stats.inserted_for_depth
        assert adjustments >= 20  # 0.6 s of skew in 10 minutes = 30 frames


def test_depth_grows_with_interarrival_jitter(jb_class):
    calm, _ = new_buffer(jb_class)
    run_network(calm, seconds=20, jitter=0.002)
    rough, _ = new_buffer(jb_class)
    run_network(rough, seconds=20, jitter=0.120)
    assert calm.target_frames == calm.min_frames
    assert rough.target_frames > calm.target_frames + 2
    assert rough.target_frames <= rough.max_frames


def test_missing_packet_is_concealed_with_the_next_payload_for_fec(jb_class):
    jb, dec = new_buffer(jb_class)
    now = 0.0
    for k in range(10):
        if k != 5:
            jb.push(packet(k), now)
        now += TICK
    kinds = [jb.pop(now + i * TICK).kind for i in range(10)]
    assert kinds.count(FrameKind.PLC) == 1
    assert dec.conceal_calls == [(6).to_bytes(4, "big")]


def test_dtx_gap_with_consecutive_sequence_numbers_is_silence_not_plc(jb_class):
    jb, dec = new_buffer(jb_class)
    # Five frames of speech, then the sender's DTX skips 10 frames of timestamps (seq +1);
    # the first packet after the gap is already buffered when the gap reaches playout.
    for k in range(5):
        jb.push(packet(k), k * TICK)
    resumed = packet(15)
    resumed.sequence_number = 5
    jb.push(resumed, 5 * TICK)
    kinds = [jb.pop(n * TICK + 0.001).kind for n in range(1, 18)]
    assert FrameKind.PLC not in kinds
    assert kinds.count(FrameKind.AUDIO) == 6
    assert kinds.count(FrameKind.SILENCE) >= 11
    assert dec.conceal_calls == []


def test_sender_going_quiet_gives_a_few_plc_frames_then_silence(jb_class):
    jb, _ = new_buffer(jb_class, max_plc_frames=3)
    for k in range(5):
        jb.push(packet(k), k * TICK)
    kinds = [jb.pop(n * TICK + 0.001).kind for n in range(1, 20)]
    assert kinds.count(FrameKind.PLC) == 3
    assert kinds[-1] is FrameKind.SILENCE


def test_sequence_and_timestamp_wrap_around_play_in_order(jb_class):
    jb, _ = new_buffer(jb_class)
    out = run_network(jb, seconds=3, seq0=0xFFF0, ts0=0xFFFFFFFF - 50 * SPF, jitter=0.03)
    played = [int(f.pcm[0]) for _, f in out if f.kind is FrameKind.AUDIO]
    assert len(played) > 130
    assert all(b > a for a, b in zip(played, played[1:], strict=False))


def test_ssrc_change_restarts_the_stream(jb_class):
    jb, _ = new_buffer(jb_class)
    for k in range(20):
        jb.push(packet(k, ssrc=1), k * TICK)
    for n in range(1, 12):
        jb.pop(n * TICK + 0.001)
    # A new source takes over with unrelated sequence numbers and timestamps.
    base = 12 * TICK
    got = []
    for k in range(20):
        jb.push(packet(k + 1000, ssrc=2, seq0=777, ts0=123456), base + k * TICK)
        got.append(jb.pop(base + k * TICK + 0.001))
    assert jb.ssrc == 2 and jb.stats.resyncs == 1
    played = [int(f.pcm[0]) for f in got if f.kind is FrameKind.AUDIO]
    assert played[:3] == [1000, 1001, 1002]


def test_timestamp_jump_on_the_same_ssrc_resyncs_instead_of_stalling(jb_class):
    jb, _ = new_buffer(jb_class)
    for k in range(20):
        jb.push(packet(k), k * TICK)
        jb.pop(k * TICK + 0.001)
    # The sender rebases its timestamps by a minute backwards.
    got = []
    for k in range(20, 40):
        p = packet(k)
        p.timestamp = (p.timestamp - 8000 * 60) & 0xFFFFFFFF
        jb.push(p, k * TICK)
        got.append(jb.pop(k * TICK + 0.001))
    assert jb.stats.resyncs == 1
    assert sum(f.kind is FrameKind.AUDIO for f in got) >= 17


def test_empty_hole_punch_packets_and_duplicates_are_dropped(jb_class):
    jb, _ = new_buffer(jb_class)
    punch = packet(0)
    punch.payload = b""
    assert jb.push(punch, 0.0) is False
    assert jb.push(packet(1), 0.0) is True
    assert jb.push(packet(1), 0.001) is False
    assert jb.stats.empty == 1 and jb.stats.duplicates == 1


def test_pop_without_decode_advances_playout_and_peek_reports_the_level(jb_class):
    jb, _ = new_buffer(jb_class)
    for k in range(6):
        jb.push(packet(k), k * TICK, level=30 + k)
    frames = [jb.pop(n * TICK + 0.001, decode=False) for n in range(1, 4)]
    assert all(f.pcm is None for f in frames)
    assert jb.peek_level(4 * TICK + 0.001) == 30 + jb.stats.played


class PcmuLikeDecoder:
    """One sample per payload byte, value = the byte (so the order of samples is visible)."""

    def decode(self, payload: bytes) -> np.ndarray:
        return np.frombuffer(payload, np.uint8).astype(np.int16)

    def conceal(self, next_payload: bytes | None = None) -> np.ndarray:
        return np.full(160, -1, np.int16)


def test_packets_of_30_and_10_ms_are_cut_into_20_ms_frames_in_order(jb_class):
    for ptime in (30, 10, 40):
        n = 8 * ptime  # samples per packet at 8 kHz
        jb = jb_class(PcmuLikeDecoder(), clock_rate=8000, frame_samples=SPF)
        sent = np.arange(n * 60) % 251  # a ramp, so every sample is identifiable
        out = []
        arrivals = [(k * ptime / 1000, k) for k in range(60)]
        i = 0
        ticks = int(60 * ptime / 20) - 4
        for tick in range(1, ticks):
            now = tick * TICK + 0.0005
            while i < len(arrivals) and arrivals[i][0] <= now:
                k = arrivals[i][1]
                payload = bytes(sent[k * n : (k + 1) * n].astype(np.uint8))
                jb.push(RtpPacket(0, k, k * n, 1, payload), arrivals[i][0])
                i += 1
            frame = jb.pop(now)
            assert frame.pcm.shape == (160,)
            if frame.kind is FrameKind.AUDIO:
                out.append(frame.pcm)
        got = np.concatenate(out)
        assert jb.stats.concealed == 0, ptime
        assert len(got) >= 160 * (ticks - 6), ptime
        np.testing.assert_array_equal(got, sent[: len(got)])


def test_overlapping_timestamps_from_a_confused_sender_never_raise(jb_class):
    # 20 ms packets whose timestamps step by 100 instead of 160, then a jump: the gaps
    # computed between them go negative; the buffer must keep producing frames.
    jb, _ = new_buffer(jb_class, max_plc_frames=0)
    for k in range(6):
        jb.push_payload(1, k, k * 100, k.to_bytes(4, "big"), 0.0)
    jb.push_payload(1, 9, 2000, (9).to_bytes(4, "big"), 0.0)
    frames = [jb.pop(0.1 + n * 0.02) for n in range(12)]
    assert all(f.pcm is not None and f.pcm.shape == (160,) for f in frames)


def test_undecoded_10_ms_packets_all_advance_playout(jb_class):
    # The mixer pops streams it leaves out with decode=False; with 10 ms packets the next
    # packet is 80 units on, not 160: every packet must be consumed in order, none skipped.
    jb, _ = new_buffer(jb_class)
    half = SPF // 2
    pushed = 0
    for n in range(200):
        now = n * TICK
        for k in (2 * n, 2 * n + 1):
            jb.push_payload(0x1234, k & 0xFFFF, k * half, k.to_bytes(4, "big"), now)
            pushed += 1
        jb.pop(now + 0.001, False)
    stats = jb.stats
    assert stats.played >= pushed - 10  # all but the few still buffered at the end
    assert stats.concealed == 0 and stats.late == 0
