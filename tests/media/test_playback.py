"""Prompts from WAV files at any rate, generated tones, the playback queue and its events."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from dialbridge.media.playback import (
    TONES,
    Pause,
    PlaybackFinished,
    Player,
    PlayMode,
    Prompt,
    load_prompt,
)


def write_wav(path: Path, x: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.astype("<i2").tobytes())


def peak_frequency(x: np.ndarray, rate: int = 8000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_wav_at_any_rate_is_converted_to_8k_keeping_pitch_and_length(tmp_path, rate):
    t = np.arange(rate) / rate  # one second
    write_wav(tmp_path / "p.wav", 10000 * np.sin(2 * np.pi * 700 * t), rate)
    prompt = load_prompt(tmp_path / "p.wav")
    assert abs(prompt.duration - 1.0) <= 0.02
    assert abs(peak_frequency(prompt.pcm.astype(float)) - 700) < 5
    assert 9000 < np.abs(prompt.pcm[1000:7000]).max() < 11000


def test_wav_above_4khz_content_is_filtered_out_not_aliased(tmp_path):
    t = np.arange(48000) / 48000
    write_wav(tmp_path / "hi.wav", 10000 * np.sin(2 * np.pi * 6000 * t), 48000)
    assert np.abs(load_prompt(tmp_path / "hi.wav").pcm).max() < 200


def test_stereo_wav_is_downmixed_and_prompts_are_cached(tmp_path):
    x = np.zeros(16000, np.int16)
    x[0::2] = 8000  # left constant, right silent
    write_wav(tmp_path / "s.wav", x, 8000, channels=2)
    a = load_prompt(tmp_path / "s.wav")
    assert a is load_prompt(tmp_path / "s.wav")
    assert abs(int(a.pcm[100]) - 4000) <= 1


def test_g711_payloads_are_encoded_once_per_codec():
    prompt = Prompt(np.zeros(800, np.int16))
    first = prompt.encoded("PCMU")
    assert first is prompt.encoded("PCMU") and len(first) == 5 and len(first[0]) == 160
    assert prompt.encoded("PCMA")[0] != first[0]


def test_eu_ringback_is_425hz_one_second_on_four_off():
    tone = TONES["ringback_eu"]
    frames = [tone.frame(i) for i in range(500)]  # 10 s
    energy = np.array([np.abs(f).max() for f in frames])
    on = energy > 1000
    assert on[:50].all() and not on[50:250].any() and on[250:300].all()
    assert abs(peak_frequency(np.concatenate(frames[:50]).astype(float)) - 425) < 5


def test_us_ringback_has_both_440_and_480hz():
    x = np.concatenate([TONES["ringback_us"].frame(i) for i in range(100)]).astype(float)
    spec = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / 8000)
    top = sorted(freqs[np.argsort(spec)[-2:]])
    assert abs(top[0] - 440) < 2 and abs(top[1] - 480) < 2


def test_queue_plays_in_order_and_reports_each_end():
    player = Player()
    player.play("a", Prompt(np.full(320, 100, np.int16)), PlayMode.REPLACE)
    player.play("b", TONES["beep"], PlayMode.REPLACE)
    bridged = np.full(160, 7, np.int16)
    out = [player.apply(bridged) for _ in range(15)]
    assert (out[0] == 100).all() and (out[1] == 100).all()
    assert np.abs(out[2]).max() > 1000  # the beep
    assert (out[12] == 7).all()  # 2 + 10 frames, then the bridged audio again
    assert player.pop_events() == [PlaybackFinished("a", True), PlaybackFinished("b", True)]
    assert not player.active


def test_mix_mode_adds_the_prompt_to_the_bridged_audio():
    player = Player()
    player.play("m", Prompt(np.full(160, 1000, np.int16)), PlayMode.MIX)
    out = player.apply(np.full(160, 234, np.int16))
    assert (out == 1234).all()


def test_stop_reports_unfinished_playbacks():
    player = Player()
    player.play("ring", TONES["ringback_eu"], PlayMode.REPLACE)  # endless
    player.play("next", Pause(1.0), PlayMode.REPLACE)
    for _ in range(100):
        assert player.apply(None) is not None
    player.stop("ring")
    assert player.current_id == "next"
    player.stop()
    assert player.pop_events() == [
        PlaybackFinished("ring", False),
        PlaybackFinished("next", False),
    ]
    assert player.apply(None) is None
