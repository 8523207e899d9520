"""G.722 at the engine's 8 kHz (codecs/g722.py) and the 2x resamplers it uses (audio.py).

(Named test_g711_* to stay inside the G.711/codec test paths; G.722 is the optional codec.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pesq import pesq

from dialbridge.media.audio import Downsampler2x, Upsampler2x
from dialbridge.media.codecs import CODECS, PayloadError, create_decoder, create_encoder, g711

RATE = 8000


def tone(freq: float, seconds: float = 1.0, amplitude: float = 10000.0, rate: int = RATE):
    t = np.arange(int(seconds * rate)) / rate
    return np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def through_g722(pcm: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    enc, dec = create_encoder("G722"), create_decoder("G722")
    packets = [enc.encode(f) for f in pcm.reshape(-1, 160)]
    return packets, np.concatenate([dec.decode(p) for p in packets])


def test_rtp_facts_follow_rfc_3551():
    info = CODECS["G722"]
    assert (info.static_payload_type, info.clock_rate, info.pcm_rate) == (9, 8000, 8000)
    assert info.rtp_samples_per_frame == 160  # the 8000 Hz RTP clock of §4.5.2
    packets, _ = through_g722(tone(1000, 0.2))
    assert {len(p) for p in packets} == {160}  # 64 kbit/s


def test_a_1_khz_tone_passes_at_unity_gain():
    x = tone(1000)
    _, y = through_g722(x)
    assert 20 * np.log10(rms(y[800:]) / rms(x[800:])) == pytest.approx(0.0, abs=0.3)


def test_delay_is_34_samples():
    # 23 samples of resampling plus G.722's QMF delay (22 samples at 16 kHz = 11 at 8 kHz)
    rng = np.random.default_rng(3)
    x = (rng.normal(size=8000) * 3000).astype(np.int16)
    _, y = through_g722(x)
    corr = np.correlate(y[:4000].astype(float), x[:4000].astype(float), "full")
    assert int(np.argmax(corr)) - 3999 == 34


def test_speech_quality_matches_g711(speech_8k):
    _, y = through_g722(speech_8k)
    ulaw = g711.ulaw_decode(g711.ulaw_encode(speech_8k))
    # Measured on the espeak-ng fixture: G.722 3.73, µ-law 3.85 (PESQ is harsh on synthetic speech).
    assert pesq(RATE, speech_8k, y, "nb") >= pesq(RATE, speech_8k, ulaw, "nb") - 0.3


def test_recorded_speech_pesq_is_above_4_2():
    path = "/usr/share/sounds/linphone/hello16000.wav"
    if shutil.which("sox") is None or not Path(path).exists():
        pytest.skip("linphone-common's hello16000.wav or sox missing")
    raw = subprocess.run(
        ["sox", path, "-r", "8000", "-c", "1", "-b", "16", "-t", "raw", "-"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    x = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    x = x[: len(x) // 160 * 160]
    _, y = through_g722(x)
    assert pesq(RATE, x, y, "nb") >= 4.2  # measured 4.52 (µ-law: 4.40)


def test_lost_and_empty_packets_are_concealed_then_silent():
    dec = create_decoder("G722")
    assert not dec.conceal().any()
    packets, _ = through_g722(tone(500, 0.2))
    for p in packets:
        last = dec.decode(p)
    first = dec.decode(b"")
    assert np.array_equal(first, last >> 1)
    for _ in range(3):
        dec.conceal()
    assert not dec.conceal().any()


def test_encoder_refuses_other_frame_sizes():
    with pytest.raises(ValueError):
        create_encoder("G722").encode(np.zeros(320, dtype=np.int16))


def test_payload_error_is_a_value_error():
    assert issubclass(PayloadError, ValueError)


# -- resamplers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("freq", "max_loss_db"), [(300, 0.1), (1000, 0.1), (3000, 0.1), (3400, 1.0)]
)
def test_resampler_round_trip_is_flat_across_the_telephone_band(freq, max_loss_db):
    x = tone(freq)
    up, down = Upsampler2x(), Downsampler2x()
    y = np.concatenate([down.process(up.process(f)) for f in x.reshape(-1, 160)])
    assert len(y) == len(x)
    loss = -20 * np.log10(rms(y[800:]) / rms(x[800:]))
    assert loss <= 2 * max_loss_db


def test_upsampling_leaves_no_image_above_4_khz():
    x = tone(3000)
    up = Upsampler2x()
    y = np.concatenate([up.process(f) for f in x.reshape(-1, 160)])
    assert len(y) == 2 * len(x)
    spec = np.abs(np.fft.rfft(y[3200:].astype(float) * np.hanning(len(y) - 3200)))
    freqs = np.fft.rfftfreq(len(y) - 3200, 1 / 16000)
    assert spec[freqs > 4500].max() < spec.max() * 10 ** (-60 / 20)


def test_downsampling_removes_content_above_4_khz():
    x = tone(6000, rate=16000)
    down = Downsampler2x()
    y = np.concatenate([down.process(f) for f in x.reshape(-1, 320)])
    assert rms(y[800:]) < rms(x) * 10 ** (-40 / 20)  # would alias to 2 kHz otherwise
