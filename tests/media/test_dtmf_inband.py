"""In-band DTMF detector against ITU-T Q.24 style requirements, speech and music talk-off.

Levels: dBm0 follows G.711 Table 5 (the µ-law digital milliwatt is 0 dBm0: a sine of RMS 16016
in 16-bit units). A DTMF level here is the *total* power of the tone pair; each tone is
3.01 dB below it, so 0 dBm0 peaks at 32070 and still fits G.711 without clipping.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dialbridge.media.codecs import g711
from dialbridge.media.dtmf import (
    DBM0_SINE_AMPLITUDE,
    DTMF_DIGITS,
    DigitEvent,
    DigitStarted,
    InbandDtmfDetector,
    dtmf_tone,
)

RATE = 8000
ALL_DIGITS = DTMF_DIGITS  # "0123456789*#ABCD"


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def through(codec: str, x: np.ndarray) -> np.ndarray:
    pcm = to_int16(x)
    if codec == "PCMU":
        return g711.ulaw_decode(g711.ulaw_encode(pcm))
    if codec == "PCMA":
        return g711.alaw_decode(g711.alaw_encode(pcm))
    return pcm


def power_dbm0(x: np.ndarray) -> float:
    return 10 * math.log10(
        np.mean(np.asarray(x, dtype=np.float64) ** 2) / (DBM0_SINE_AMPLITUDE**2 / 2)
    )


def digit_train(
    digits: str,
    level_dbm0: float,
    snr_db: float | None = 15.0,
    tone_s: float = 0.040,
    pause_s: float = 0.040,
    seed: int = 1,
    **tone_kwargs,
) -> np.ndarray:
    """Digits separated by pauses, with white noise ``snr_db`` below the tone level."""
    rng = np.random.default_rng(seed)
    lead = int(rng.integers(0, 160))  # tones do not start on frame boundaries
    parts = [np.zeros(400 + lead)]
    for d in digits:
        parts.append(
            dtmf_tone(d, tone_s, level_dbm0, phase=rng.uniform(0, 2 * np.pi), **tone_kwargs)
        )
        parts.append(np.zeros(int(pause_s * RATE)))
    parts.append(np.zeros(400))
    x = np.concatenate(parts)
    if snr_db is not None:
        noise_power = DBM0_SINE_AMPLITUDE**2 / 2 * 10 ** ((level_dbm0 - snr_db) / 10)
        x = x + rng.normal(size=len(x)) * math.sqrt(noise_power)
    return x


def detect(pcm: np.ndarray, detector: InbandDtmfDetector | None = None):
    det = detector or InbandDtmfDetector(report_start=True)
    pcm = pcm[: len(pcm) // 160 * 160]
    started, ended, tone_frames = [], [], []
    for i, frame in enumerate(pcm.reshape(-1, 160)):
        result = det.process(frame)
        for e in result.events:
            (started if isinstance(e, DigitStarted) else ended).append((i, e))
        tone_frames.append(result.tone)
    return started, ended, np.array(tone_frames)


def digits_of(ended) -> str:
    return "".join(e.digit for _, e in ended)


def test_digital_milliwatt_is_0_dbm0():
    # G.711 Table 5: the µ-law sequence 1E 0B 0B 1E 9E 8B 8B 9E repeated is a 1 kHz 0 dBm0 sine.
    dmw = g711.ulaw_decode(bytes.fromhex("1e0b0b1e9e8b8b9e") * 100)
    assert power_dbm0(dmw) == pytest.approx(0.0, abs=0.02)


def test_dtmf_tone_level_is_the_total_of_both_tones():
    tone = dtmf_tone("5", 1.0, -10.0)
    assert power_dbm0(tone) == pytest.approx(-10.0, abs=0.05)
    assert np.abs(dtmf_tone("D", 0.5, 0.0)).max() < 32636  # 0 dBm0 total does not overload


@pytest.mark.parametrize("codec", ["linear", "PCMU", "PCMA"])
@pytest.mark.parametrize("level", [-25, -20, -15, -10, -5, 0])
def test_all_16_digits_are_detected_at_15_db_snr(level, codec):
    # 40 ms tones and 40 ms pauses: Q.24's shortest tone and pause that must be recognised.
    pcm = through(codec, digit_train(ALL_DIGITS, level, snr_db=15.0, seed=level + 100))
    started, ended, _ = detect(pcm)
    assert digits_of(ended) == ALL_DIGITS
    assert "".join(e.digit for _, e in started) == ALL_DIGITS


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_digits_survive_g711_at_minus_25_dbm0_with_different_noise(codec):
    for seed in range(3):
        pcm = through(codec, digit_train(ALL_DIGITS, -25, snr_db=15.0, seed=seed))
        assert digits_of(detect(pcm)[1]) == ALL_DIGITS


@pytest.mark.parametrize("error", [+0.015, -0.015])
def test_frequency_deviation_of_1_5_percent_is_accepted(error):
    pcm = to_int16(digit_train(ALL_DIGITS, -10, snr_db=15.0, freq_error=error))
    assert digits_of(detect(pcm)[1]) == ALL_DIGITS


def test_opposite_deviations_of_the_two_tones_are_accepted():
    rng = np.random.default_rng(9)
    parts = [np.zeros(500)]
    for d in ALL_DIGITS:
        low = dtmf_tone(d, 0.05, -13.0, freq_error=+0.015, phase=rng.uniform(0, 6))
        high = dtmf_tone(d, 0.05, -13.0, freq_error=-0.015, phase=rng.uniform(0, 6))
        # keep the low tone of the first and the high tone of the second: filter by FFT mask
        spec_l, spec_h = np.fft.rfft(low), np.fft.rfft(high)
        f = np.fft.rfftfreq(len(low), 1 / RATE)
        mix = np.fft.irfft(np.where(f < 1100, spec_l, spec_h), len(low))
        parts += [mix, np.zeros(400)]
    assert digits_of(detect(to_int16(np.concatenate(parts)))[1]) == ALL_DIGITS


@pytest.mark.parametrize("error", [+0.035, -0.035, +0.05, -0.05])
def test_frequency_deviation_of_3_5_percent_or_more_is_rejected(error):
    pcm = to_int16(digit_train(ALL_DIGITS, -10, snr_db=30.0, tone_s=0.1, freq_error=error))
    started, ended, _ = detect(pcm)
    assert ended == [] and started == []


@pytest.mark.parametrize("twist", [+4.0, -8.0, +2.0, -4.0])
def test_twist_within_limits_is_accepted(twist):
    # twist = high-group level minus low-group level: up to +4 dB, down to -8 dB
    pcm = to_int16(digit_train(ALL_DIGITS, -10, snr_db=15.0, twist_db=twist))
    assert digits_of(detect(pcm)[1]) == ALL_DIGITS


@pytest.mark.parametrize("twist", [+7.0, -11.0, +10.0, -15.0])
def test_twist_beyond_limits_is_rejected(twist):
    pcm = to_int16(digit_train(ALL_DIGITS, -10, snr_db=30.0, tone_s=0.1, twist_db=twist))
    assert detect(pcm)[1] == []


def test_too_quiet_tones_are_ignored():
    pcm = to_int16(digit_train(ALL_DIGITS, -45, snr_db=None, tone_s=0.1))
    assert detect(pcm)[1] == []


def test_a_20_ms_tone_burst_is_not_a_digit():
    pcm = to_int16(digit_train("1595", -10, snr_db=30.0, tone_s=0.020, pause_s=0.1))
    assert detect(pcm)[1] == []


def test_a_single_tone_is_not_a_digit():
    t = np.arange(8000) / RATE
    for f in (697, 941, 1209, 1633, 1000):
        assert detect(to_int16(10000 * np.sin(2 * np.pi * f * t)))[1] == []


def test_repeated_digit_with_a_40_ms_pause_counts_twice():
    pcm = to_int16(digit_train("5555", -10, snr_db=15.0, tone_s=0.06, pause_s=0.04))
    assert digits_of(detect(pcm)[1]) == "5555"


def test_a_10_ms_dropout_inside_a_tone_does_not_split_the_digit():
    tone = dtmf_tone("8", 0.2, -10)
    tone[800:880] = 0  # 10 ms gap in the middle
    pcm = to_int16(np.concatenate([np.zeros(400), tone, np.zeros(800)]))
    _, ended, _ = detect(pcm)
    assert digits_of(ended) == "8"
    assert ended[0][1].duration_ms == pytest.approx(200, abs=30)


def test_digit_is_confirmed_within_40_ms_and_reports_its_duration():
    tone = dtmf_tone("#", 0.12, -10)
    pcm = to_int16(np.concatenate([np.zeros(1600), tone, np.zeros(1600)]))
    started, ended, tone_frames = detect(pcm)
    (i_start, s), (_, e) = started[0], ended[0]
    assert s == DigitStarted("#", "inband")
    assert i_start * 20 + 20 - 200 <= 40  # frame i ends at (i+1)*20 ms; the tone began at 200 ms
    assert e == DigitEvent("#", e.duration_ms, "inband") and abs(e.duration_ms - 120) <= 20
    # frames flagged as tone cover the tone (so the bridge can mute them) and not much more
    flagged = np.flatnonzero(tone_frames)
    assert flagged[0] <= 11 and flagged[-1] >= 15
    assert len(flagged) <= 10


def test_no_detection_on_a_minute_of_speech(long_speech_8k):
    assert len(long_speech_8k) >= 60 * RATE
    for gain in (1.0, 2.0):  # as recorded and 6 dB louder
        pcm = to_int16(long_speech_8k.astype(np.float64) * gain)
        started, ended, _ = detect(pcm)
        assert started == [] and ended == []


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_no_detection_on_speech_after_g711(long_speech_8k, codec):
    started, ended, _ = detect(through(codec, long_speech_8k.astype(np.float64)))
    assert started == [] and ended == []


def test_no_detection_on_speech_with_background_noise(long_speech_8k):
    rng = np.random.default_rng(4)
    noisy = long_speech_8k.astype(np.float64) + rng.normal(size=len(long_speech_8k)) * 100
    assert detect(to_int16(noisy))[1] == []


def test_no_detection_on_music(music_8k):
    started, ended, _ = detect(music_8k)
    assert started == [] and ended == []


def test_digits_are_found_between_speech(speech_passages):
    speech = speech_passages[1].astype(np.float64)
    tones = digit_train("2580", -12, snr_db=None, tone_s=0.08, pause_s=0.08)
    pcm = through("PCMU", np.concatenate([speech[:16000], tones, speech[16000:32000]]))
    assert digits_of(detect(pcm)[1]) == "2580"


def test_tone_active_follows_the_tone_and_results_iterate_over_events():
    det = InbandDtmfDetector()
    tone = to_int16(np.concatenate([dtmf_tone("6", 0.1, -10), np.zeros(1600)]))
    flags, events = [], []
    for frame in tone.reshape(-1, 160):
        events += list(det.process(frame))
        flags.append(det.tone_active)
    assert flags[1:4] == [True] * 3 and not any(flags[-4:])
    assert [e.digit for e in events] == ["6"] and isinstance(events[0], DigitEvent)


def test_frames_of_other_sizes_are_refused():
    with pytest.raises(ValueError):
        InbandDtmfDetector().process(np.zeros(320, dtype=np.int16))


@pytest.mark.parametrize("level", [-25, 0])
def test_digits_survive_an_opus_round_trip(level):
    # A SIP phone on Opus that sends its tones in-band: SILK keeps them detectable.
    from dialbridge.media.codecs import create_decoder, create_encoder

    pcm = to_int16(digit_train(ALL_DIGITS, level, snr_db=15.0, tone_s=0.06, pause_s=0.06))
    pcm = pcm[: len(pcm) // 160 * 160]
    enc, dec = create_encoder("opus"), create_decoder("opus")
    out = np.concatenate([dec.decode(enc.encode(f)) for f in pcm.reshape(-1, 160)])
    assert digits_of(detect(out)[1]) == ALL_DIGITS


# -- sounds shipped by the Debian peers: real-world vectors ------------------------------------

BARESIP_SOUNDS = "/usr/share/baresip"
LINPHONE_SOUNDS = "/usr/share/sounds/linphone"


def load_with_sox(path: str) -> np.ndarray:
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("sox") is None or not Path(path).exists():
        pytest.skip(f"{path} or sox missing (Debian baresip-core / linphone-common / sox)")
    raw = subprocess.run(
        ["sox", path, "-r", "8000", "-c", "1", "-b", "16", "-t", "raw", "-"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    return np.frombuffer(raw, dtype="<i2").astype(np.int16)


def test_baresip_keypad_sounds_are_their_digits():
    # baresip plays these 400 ms DTMF files (44.1 kHz) as key feedback; sox converts to 8 kHz.
    names = {str(d): d for d in "0123456789"} | {"star": "*", "route": "#"}
    for name, digit in names.items():
        pcm = load_with_sox(f"{BARESIP_SOUNDS}/sound{name}.wav")
        pcm = np.concatenate([np.zeros(800, dtype=np.int16), pcm, np.zeros(1600, dtype=np.int16)])
        assert digits_of(detect(pcm)[1]) == digit, name


@pytest.mark.parametrize(
    "path",
    [
        f"{BARESIP_SOUNDS}/ringback.wav",
        f"{BARESIP_SOUNDS}/busy.wav",
        f"{BARESIP_SOUNDS}/callwaiting.wav",
        f"{BARESIP_SOUNDS}/ring.wav",
        f"{BARESIP_SOUNDS}/error.wav",
        f"{BARESIP_SOUNDS}/notfound.wav",
        f"{LINPHONE_SOUNDS}/hello8000.wav",
        f"{LINPHONE_SOUNDS}/hello16000.wav",
        f"{LINPHONE_SOUNDS}/ringback.wav",
        f"{LINPHONE_SOUNDS}/toy-mono.wav",
        f"{LINPHONE_SOUNDS}/rings/oldphone-mono.wav",
    ],
)
def test_call_progress_tones_speech_and_music_from_the_peers_are_not_digits(path):
    # Ringback (440+480 Hz), busy (480+620 Hz) etc. are dual tones too, just not DTMF ones.
    pcm = load_with_sox(path)
    assert detect(np.concatenate([pcm, np.zeros(1600, dtype=np.int16)]))[1] == []
