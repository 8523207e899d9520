"""The prompt catalogue: espeak-ng renders in English and German, recordings take precedence."""

from __future__ import annotations

import re
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from dialbridge.media.playback import load_prompt
from dialbridge.prompts import (
    KEYS,
    TEXTS,
    PromptCatalogue,
    PromptRenderError,
    UnknownPromptError,
    catalogue_from_config,
    spoken_keys,
)

needs_tts = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox (Debian packages) are not installed",
)


@pytest.fixture
def catalogue(tmp_path: Path) -> PromptCatalogue:
    return PromptCatalogue(tmp_path / "cache", tmp_path / "recordings", ("en", "de"))


def read_wav(path: Path) -> tuple[int, int, int, np.ndarray]:
    with wave.open(str(path)) as w:
        frames = w.readframes(w.getnframes())
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), np.frombuffer(frames, "<i2")


def write_tone(path: Path, seconds: float, rate: int = 16000, freq: float = 440.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


# -- rendering -----------------------------------------------------------------------------------


@needs_tts
@pytest.mark.parametrize("language", ["en", "de"])
@pytest.mark.parametrize("key", ["enter_pin", "muted", "goodbye", "lobby_wait", "language_menu"])
def test_prompt_renders_to_plausible_8khz_speech(
    catalogue: PromptCatalogue, key: str, language: str
) -> None:
    path = catalogue.path(key, language)
    rate, channels, width, pcm = read_wav(path)
    assert (rate, channels, width) == (8000, 1, 2)
    duration = len(pcm) / rate
    words = len(catalogue.text(key, language).split())
    # espeak-ng at 160 wpm with 0.2 s of padding: roughly 0.2-0.8 s per word.
    assert 0.15 * words + 0.2 < duration < 0.8 * words + 1.0, (duration, words)
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    assert rms > 300  # speech, not silence
    assert load_prompt(path).duration == pytest.approx(duration, abs=0.02)  # the engine plays it


@needs_tts
def test_german_and_english_are_different_recordings(catalogue: PromptCatalogue) -> None:
    en, de = catalogue.path("muted", "en"), catalogue.path("muted", "de")
    assert en != de
    assert en.read_bytes() != de.read_bytes()
    assert "de" in de.parts and "en" in en.parts


@needs_tts
def test_second_lookup_uses_the_cache(catalogue: PromptCatalogue) -> None:
    first = catalogue.path("goodbye", "en")
    stamp = first.stat().st_mtime_ns
    assert catalogue.path("goodbye", "en", "PCMA") == first
    assert first.stat().st_mtime_ns == stamp


@needs_tts
def test_ensure_built_renders_every_key_in_every_language(catalogue: PromptCatalogue) -> None:
    paths = catalogue.ensure_built()
    assert len(paths) == len(KEYS) * 2
    assert all(p.is_file() and p.stat().st_size > 8000 for p in paths)


@needs_tts
def test_changed_key_map_renders_anew_and_sweeps_the_old_file(tmp_path: Path) -> None:
    old = PromptCatalogue(tmp_path / "c", None, ("en",)).path("help", "en")
    custom = PromptCatalogue(tmp_path / "c", None, ("en",), keys={"mute_keys": "#5"})
    assert "Press pound 5 to mute or unmute" in custom.text("help", "en")
    new = custom.path("help", "en")
    assert new != old
    custom.ensure_built()
    assert not old.exists()
    assert new.exists()


@needs_tts
def test_free_text_is_spoken_and_cached(catalogue: PromptCatalogue) -> None:
    path = catalogue.speak("-Calling plus 49 30 1234", "en")  # a leading "-" is text, not a flag
    assert read_wav(path)[0] == 8000
    assert catalogue.speak("-Calling plus 49 30 1234", "en") == path


async def test_path_async_runs_off_the_loop(catalogue: PromptCatalogue) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = await catalogue.path_async("goodbye", "de")
    assert path.is_file()


def test_missing_espeak_is_a_clear_render_error(tmp_path: Path) -> None:
    c = PromptCatalogue(tmp_path, None, ("en",), espeak="no-such-espeak-ng")
    with pytest.raises(PromptRenderError, match="no-such-espeak-ng is not installed"):
        c.path("goodbye", "en")


# -- recordings ----------------------------------------------------------------------------------


def test_dropped_in_recording_takes_precedence(catalogue: PromptCatalogue, tmp_path: Path) -> None:
    recording = tmp_path / "recordings" / "de" / "muted.wav"
    write_tone(recording, 1.5)
    assert catalogue.path("muted", "de") == recording
    assert load_prompt(recording).duration == pytest.approx(1.5, abs=0.03)


@needs_tts
def test_recording_for_one_language_leaves_the_other_rendered(
    catalogue: PromptCatalogue, tmp_path: Path
) -> None:
    write_tone(tmp_path / "recordings" / "de" / "muted.wav", 1.0)
    en = catalogue.path("muted", "en")
    assert en.is_relative_to(tmp_path / "cache")
    paths = catalogue.ensure_built()
    assert tmp_path / "recordings" / "de" / "muted.wav" in paths
    assert en in paths


@needs_tts
def test_recording_in_another_format_is_converted_once(
    catalogue: PromptCatalogue, tmp_path: Path
) -> None:
    source = tmp_path / "src.wav"
    write_tone(source, 1.0, rate=44100)
    flac = tmp_path / "recordings" / "en" / "goodbye.flac"
    flac.parent.mkdir(parents=True)
    import subprocess

    subprocess.run(["sox", str(source), str(flac)], check=True)
    path = catalogue.path("goodbye", "en")
    rate, channels, _, pcm = read_wav(path)
    assert (rate, channels) == (8000, 1)
    assert 1.1 < len(pcm) / rate < 1.3  # the tone plus the padding
    # dominant frequency is still the 440 Hz tone, not speech
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    assert abs(np.argmax(spectrum) * rate / len(pcm) - 440) < 5
    assert catalogue.path("goodbye", "en") == path


def test_recording_is_found_without_tts_installed(tmp_path: Path) -> None:
    c = PromptCatalogue(tmp_path / "c", tmp_path / "r", ("en",), espeak="no-such-espeak-ng")
    write_tone(tmp_path / "r" / "en" / "goodbye.wav", 0.5)
    assert c.path("goodbye", "en") == tmp_path / "r" / "en" / "goodbye.wav"


# -- errors and texts ----------------------------------------------------------------------------


def test_unknown_key_is_a_clear_error(catalogue: PromptCatalogue) -> None:
    with pytest.raises(
        UnknownPromptError, match=r"unknown prompt key 'mutde'; known keys: .*muted"
    ):
        catalogue.path("mutde", "en")


def test_unconfigured_language_is_a_clear_error(tmp_path: Path) -> None:
    c = PromptCatalogue(tmp_path, None, ("en",))
    with pytest.raises(UnknownPromptError, match=r"'de' is not configured \(configured: en\)"):
        c.path("muted", "de")
    with pytest.raises(UnknownPromptError, match="no prompt texts for language 'fr'"):
        PromptCatalogue(tmp_path, None, ("en", "fr"))


def test_every_language_has_every_key_and_no_stray_placeholders(
    catalogue: PromptCatalogue,
) -> None:
    for language in TEXTS:
        assert set(TEXTS[language]) == set(KEYS), language
        for key in KEYS:
            text = catalogue.text(key, language)
            assert text.strip()
            assert not re.search(r"[{}]", text), (language, key, text)


def test_required_keys_exist() -> None:
    required = {
        "enter_pin", "unknown_pin", "enter_password", "wrong_password", "connecting",
        "could_not_join", "muted", "unmuted", "cannot_unmute_hand_raised", "hand_raised",
        "hand_lowered", "help", "lobby_wait", "lobby_rejected", "lobby_joined", "time_warning",
        "time_up", "goodbye", "calling", "too_many_attempts", "no_input", "language_menu",
    }  # fmt: skip
    assert required <= KEYS


def test_language_menu_digit_follows_the_language_order(tmp_path: Path) -> None:
    c = PromptCatalogue(tmp_path, None, ("en", "de"))
    assert c.text("language_menu", "de") == "Für Deutsch drücken Sie die 2."
    assert c.text("language_menu", "en") == "For English, press 1."
    c = PromptCatalogue(tmp_path, None, ("de", "en"))
    assert c.text("language_menu", "en") == "For English, press 2."


def test_keys_are_spoken_per_language() -> None:
    assert spoken_keys("*6", "en") == "star 6"
    assert spoken_keys("*6", "de") == "Stern 6"
    assert spoken_keys("#1", "de") == "Raute 1"


def test_catalogue_from_config_uses_configured_dirs_languages_and_keys(tmp_path: Path) -> None:
    from types import SimpleNamespace

    config = SimpleNamespace(
        store=SimpleNamespace(data_dir=tmp_path),
        ivr=SimpleNamespace(
            language="de",
            prompt_dir=str(tmp_path / "cache"),
            prompt_override_dir=str(tmp_path / "rec"),
            keys={"mute_toggle": "#6"},
        ),
        numbers=SimpleNamespace(entries=[SimpleNamespace(language="en")]),
    )
    c = catalogue_from_config(config)
    assert c.languages == ("de", "en")
    assert c.cache_dir == tmp_path / "cache"
    assert c.override_dir == tmp_path / "rec"
    assert "Raute 6" in c.text("muted", "de")


def test_wav_header_of_rendered_file_is_well_formed(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = PromptCatalogue(tmp_path, None, ("en",)).path("goodbye", "en")
    data = path.read_bytes()
    riff_size = struct.unpack_from("<I", data, 4)[0]
    assert riff_size == len(data) - 8  # sox wrote real sizes, unlike espeak's streamed header


def test_unbound_control_is_not_offered_in_the_texts(tmp_path: Path) -> None:
    c = PromptCatalogue(tmp_path, None, ("en", "de"), keys={"hand_keys": ""})
    assert c.text("help", "en") == (
        "Press star 6 to mute or unmute. Press star 1 to hear this again."
    )
    assert "melden" not in c.text("help", "de")
    assert c.text("moderation_on", "en") == "A moderator now decides who may speak."
    assert c.text("visitor", "de") == "Sie nehmen als Zuschauer teil."
