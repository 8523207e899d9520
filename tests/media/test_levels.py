"""RFC 6464 audio levels: calibrated dBov, the one-byte element, VAD and the 127 rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dialbridge.media.levels import (
    AudioLevel,
    AudioLevelMeter,
    dbov,
    dbov_to_level,
    encode_audio_level,
    frame_dbov,
    parse_audio_level,
    parse_csrc_audio_levels,
)
from dialbridge.media.rtp import RtpPacket

RATE = 8000


def sine(amplitude: float, freq: float = 1000.0, n: int = 160, phase: float = 0.3) -> np.ndarray:
    t = np.arange(n) / RATE
    return np.round(amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.int16)


def test_full_scale_sine_is_about_minus_3_dbov():
    assert dbov(sine(32767)) == pytest.approx(-3.01, abs=0.05)
    assert dbov_to_level(dbov(sine(32767))) == 3


def test_full_scale_square_wave_is_0_dbov():
    square = np.where(np.arange(160) % 8 < 4, 32767, -32768).astype(np.int16)
    assert dbov_to_level(dbov(square)) == 0


@pytest.mark.parametrize("target_dbov", [-10, -20, -30, -40, -60, -80])
def test_calibrated_sines_give_their_level(target_dbov):
    amplitude = 32768 * math.sqrt(2) * 10 ** (target_dbov / 20)
    assert dbov_to_level(dbov(sine(amplitude))) == pytest.approx(-target_dbov, abs=1)


def test_digital_silence_is_level_127():
    assert dbov(np.zeros(160, dtype=np.int16)) == -math.inf
    assert dbov_to_level(-math.inf) == 127
    assert dbov_to_level(-200.0) == 127 and dbov_to_level(float("nan")) == 127


def test_vectorised_frame_dbov_matches_the_per_frame_value():
    rng = np.random.default_rng(3)
    frames = (rng.normal(size=(50, 160)) * rng.uniform(1, 5000, size=(50, 1))).astype(np.int16)
    frames[7] = 0
    vec = frame_dbov(frames)
    assert vec[7] == -math.inf
    expected = [dbov(f) for f in frames]
    assert np.allclose(vec[np.isfinite(vec)], np.array(expected)[np.isfinite(vec)], atol=1e-3)


def test_element_byte_layout_is_v_flag_then_level():
    # RFC 6464 §3: |V| level (7 bits)|
    assert encode_audio_level(35, True) == b"\xa3"
    assert encode_audio_level(127, False) == b"\x7f"
    assert parse_audio_level(b"\xa3") == AudioLevel(35, True)
    assert parse_audio_level(b"\x05\x00\x00") == AudioLevel(5, False)
    with pytest.raises(ValueError):
        encode_audio_level(128, False)
    with pytest.raises(ValueError):
        parse_audio_level(b"")


def test_level_travels_in_an_rtp_one_byte_extension_with_id_1():
    level = AudioLevel(42, True)
    raw = RtpPacket(111, 1, 960, 5, b"op", extensions={1: level.to_bytes()}).serialize()
    assert parse_audio_level(RtpPacket.parse(raw).extensions[1]) == level


def test_silence_is_not_voice_and_never_127_by_default():
    meter = AudioLevelMeter()
    out = [meter.measure(np.zeros(160, dtype=np.int16)) for _ in range(20)]
    assert all(not a.voice for a in out)
    assert {a.level for a in out} == {126}


def test_max_level_127_allows_the_muted_value_for_silence_only():
    meter = AudioLevelMeter(max_level=127)
    assert meter.measure(np.zeros(160, dtype=np.int16)) == AudioLevel(127, False)


def test_voiced_frames_are_never_127_even_when_very_quiet():
    meter = AudioLevelMeter(max_level=127, hangover_frames=5)
    meter.measure(sine(10000))
    # a digital-silence frame right after speech is still inside the hangover: voiced, 126
    a = meter.measure(np.zeros(160, dtype=np.int16))
    assert a.voice and a.level == 126


def test_speech_is_voiced_and_pauses_are_not(speech_8k):
    meter = AudioLevelMeter()
    frames = speech_8k.reshape(-1, 160)
    levels = [meter.measure(f) for f in frames]
    energy = frame_dbov(frames)
    loud = energy > -35
    voiced = np.array([a.voice for a in levels])
    assert voiced[loud].mean() > 0.99
    assert not any(a.level == 127 for a in levels)
    # frames deep in a pause (everything quiet for longer than the hangover) are unvoiced
    quiet = energy < -60
    window = meter.hangover_frames + 2
    in_pause = np.array(
        [i >= window and quiet[i - window : i + 1].all() for i in range(len(quiet))]
    )
    assert in_pause.sum() > 20
    assert not voiced[in_pause].any()


def test_steady_background_noise_is_learnt_as_not_voice():
    rng = np.random.default_rng(5)
    meter = AudioLevelMeter()
    noise = (rng.normal(size=(500, 160)) * 300).astype(np.int16)  # about -41 dBov
    out = [meter.measure(f) for f in noise]
    assert not any(a.voice for a in out[-100:])
    burst = meter.measure(sine(12000))
    assert burst.voice and burst.level == pytest.approx(12, abs=1)


def test_csrc_levels_map_to_the_csrc_list_in_order():
    # RFC 6465 §3: level i belongs to CSRC i; the reserved MSB is ignored
    data = bytes([0x0A, 0x85, 0x7F, 0x00])  # last byte is padding
    assert parse_csrc_audio_levels(data, [11, 22, 33]) == {11: 10, 22: 5, 33: 127}
    assert parse_csrc_audio_levels(b"\x01", [7, 8]) == {7: 1}


def test_line_noise_after_digital_silence_is_learnt_within_3_seconds():
    rng = np.random.default_rng(6)
    meter = AudioLevelMeter()
    for _ in range(100):
        meter.measure(np.zeros(160, dtype=np.int16))
    noise = (rng.normal(size=(300, 160)) * 80).astype(np.int16)  # about -52 dBov
    out = [meter.measure(f) for f in noise]
    assert not any(a.voice for a in out[150:])


# -- the C port (_dataplane.AudioLevelMeter) ---------------------------------------------------


def random_frames(seed: int, count: int, speech: np.ndarray | None = None):
    """A long random mix of what a send path meters: speech-like bursts (modulated
    harmonics), steady and changing noise, digital silence, ``None`` (comfort silence),
    very quiet and clipped frames, and real speech when given."""
    rng = np.random.default_rng(seed)
    t = np.arange(160) / RATE
    kinds = ["speech", "noise", "silence", "none", "quiet", "loud", "real"]
    out: list[np.ndarray | None] = []
    noise_rms = 300.0
    k = 0
    while len(out) < count:
        kind = kinds[rng.integers(0, len(kinds))]
        run = int(rng.integers(1, 40))
        for _ in range(run):
            k += 1
            if kind == "speech":
                f0 = rng.uniform(90, 260)
                env = abs(np.sin(2 * np.pi * 4 * k * 0.02)) * rng.uniform(500, 20000)
                x = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6))
                frame = env * x + rng.normal(0, noise_rms, 160)
            elif kind == "noise":
                noise_rms *= rng.uniform(0.9, 1.1)
                frame = rng.normal(0, noise_rms, 160)
            elif kind == "quiet":
                frame = rng.integers(-2, 3, 160)
            elif kind == "loud":
                frame = rng.uniform(-40000, 40000, 160)
            elif kind == "real" and speech is not None:
                start = int(rng.integers(0, len(speech) // 160)) * 160
                frame = speech[start : start + 160]
            else:
                frame = None if kind == "none" else np.zeros(160)
            out.append(
                None if frame is None else np.clip(np.round(frame), -32768, 32767).astype(np.int16)
            )
    return out[:count]


@pytest.mark.parametrize(
    "options",
    [{}, {"max_level": 127}, {"margin_db": 6.0, "hangover_frames": 3, "floor_rise_db": 0.3}],
    ids=["defaults", "max_level_127", "tuned"],
)
def test_native_meter_gives_the_same_bytes_as_the_python_meter(options, speech_8k):
    from tests.media.conftest import native_dataplane_or_skip

    dataplane = native_dataplane_or_skip()
    python, native = AudioLevelMeter(**options), dataplane.AudioLevelMeter(**options)
    frames = random_frames(21, 20000, speech_8k)
    voiced = 0
    for i, frame in enumerate(frames):
        expected = python.level_byte(frame)
        assert native.level_byte(frame) == expected, (i, None if frame is None else dbov(frame))
        assert native.noise_floor_dbov == pytest.approx(python.noise_floor_dbov, abs=1e-3), i
        voiced += expected >> 7
    assert 0.2 * len(frames) < voiced < 0.8 * len(frames)  # both flag states were exercised
    # measure_byte with the edge values: digital silence, NaN, beyond full scale.
    for value in (-math.inf, float("nan"), 3.0, -127.0, -126.5, -0.5, -20.5, -21.5):
        assert native.measure_byte(value) == python.measure_byte(value), value


def test_native_meter_rejects_a_level_outside_the_rfc_6464_range():
    from tests.media.conftest import native_dataplane_or_skip

    dataplane = native_dataplane_or_skip()
    with pytest.raises(ValueError):
        dataplane.AudioLevelMeter(max_level=128)
    with pytest.raises(TypeError):
        dataplane.AudioLevelMeter().level_byte(np.zeros(160, np.float32))
