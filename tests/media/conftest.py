"""Shared media fixtures: real speech rendered with espeak-ng (and sox) once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

RATE = 8000

# (voice, espeak options, text). English and German, male and female variants, different
# pitches and speeds, and digits spoken aloud (the hardest talk-off case for a DTMF detector).
SPEECH_PASSAGES = [
    (
        "en-us",
        ["-p", "50", "-s", "165"],
        "Welcome to the conference service. Please enter your meeting PIN, followed by the "
        "pound key. If you do not know the number, ask the person who invited you.",
    ),
    (
        "en-us+f3",
        ["-p", "70", "-s", "150"],
        "The quick brown fox jumps over the lazy dog, while six sleek swans swim swiftly "
        "southwards. Peter Piper picked a peck of pickled peppers.",
    ),
    (
        "en-gb+m3",
        ["-p", "35", "-s", "180"],
        "Your call is important to us. One, two, three, four, five, six, seven, eight, nine, "
        "zero. Star. Hash. The number you have dialled is not in service.",
    ),
    (
        "de",
        ["-p", "45", "-s", "160"],
        "Willkommen bei der Telefonkonferenz. Bitte geben Sie Ihre Konferenznummer ein und "
        "bestätigen Sie mit der Rautetaste. Vielen Dank für Ihre Geduld.",
    ),
    (
        "de+f2",
        ["-p", "80", "-s", "140"],
        "Eins, zwei, drei, vier, fünf, sechs, sieben, acht, neun, null. Zwölf Boxkämpfer "
        "jagen Viktor quer über den großen Sylter Deich.",
    ),
    (
        "en-us+m7",
        ["-p", "20", "-s", "200"],
        "Quality of service reports show jitter, packet loss and round trip time for every "
        "call leg. Engineers review them every morning before the stand up meeting.",
    ),
    (
        "en-gb-scotland+f4",
        ["-p", "60", "-s", "170"],
        "Hello, hello, can you hear me? I think you are on mute. Could you unmute yourself "
        "please? Oh, now I can hear you. Lovely weather today, isn't it?",
    ),
    (
        "de+m2",
        ["-p", "55", "-s", "175"],
        "Die Sitzung beginnt in wenigen Minuten. Der Moderator hat Sie stummgeschaltet. "
        "Drücken Sie Stern sechs, um das Mikrofon wieder einzuschalten.",
    ),
    (
        "en-us+f5",
        ["-p", "90", "-s", "130"],
        "Ooooh, aaaah, eeeee. La la la la la. Mmmmm hmmmm. Whee! Yes, yes, yes. "
        "Seven hundred and seventy seven. Nine nine nine.",
    ),
    (
        "en-us",
        ["-p", "10", "-s", "190"],
        "Thank you for calling. This meeting is being recorded. By staying on the line you "
        "agree to the recording. Press one to continue or hang up now.",
    ),
]


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def render_speech(
    directory: Path, index: int, voice: str, opts: list[str], text: str
) -> np.ndarray:
    out = directory / f"speech-{index}.wav"
    if not out.exists():
        tts = subprocess.run(
            ["espeak-ng", "-v", voice, *opts, "--stdout", text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            ["sox", "-t", "wav", "-", "-r", str(RATE), "-c", "1", "-b", "16", str(out)],
            input=tts.stdout,
            check=True,
            capture_output=True,
            timeout=60,
        )
    return _read_wav(out)


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages espeak-ng and sox)")
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def speech_passages(speech_dir: Path) -> list[np.ndarray]:
    """Every passage as int16 at 8 kHz (about 90 s in total)."""
    return [render_speech(speech_dir, i, *p) for i, p in enumerate(SPEECH_PASSAGES)]


@pytest.fixture(scope="session")
def speech_8k(speech_passages: list[np.ndarray]) -> np.ndarray:
    """About 20 s of speech (two voices), trimmed to whole 20 ms frames, for codec tests."""
    x = np.concatenate([speech_passages[0], speech_passages[3]])
    return x[: len(x) // 160 * 160]


@pytest.fixture(scope="session")
def long_speech_8k(speech_passages: list[np.ndarray]) -> np.ndarray:
    """All passages back to back (>= 60 s, en and de), for DTMF talk-off tests."""
    x = np.concatenate(speech_passages)
    return x[: len(x) // 160 * 160]


@pytest.fixture(scope="session")
def music_8k() -> np.ndarray:
    """About 20 s of synthetic music: melodies and chords with harmonics and vibrato."""
    rng = np.random.default_rng(7)
    notes = 440.0 * 2.0 ** ((np.arange(-24, 19)) / 12)  # A2 .. E6
    pieces = []
    for _ in range(80):
        dur = rng.choice([0.125, 0.25, 0.5])
        t = np.arange(int(dur * RATE)) / RATE
        chord = rng.choice(notes, size=rng.integers(1, 4), replace=False)
        env = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(1, 6))
        y = np.zeros_like(t)
        for f in chord:
            vib = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t)
            for h, a in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)):
                if f * h < RATE / 2:
                    y += a * np.sin(2 * np.pi * f * h * np.cumsum(vib) / RATE)
        pieces.append(env * y / len(chord))
    x = np.concatenate(pieces)
    x = x / np.max(np.abs(x)) * 12000
    return x.astype(np.int16)[: len(x) // 160 * 160]


# -- the C data plane (dialbridge.media._dataplane) -------------------------------------------

REQUIRE_NATIVE_ENV = "DIALBRIDGE_REQUIRE_NATIVE"


def native_dataplane_or_skip():
    """The configured C data plane module; skips when it is not built (or turned off with
    DIALBRIDGE_MEDIA_NATIVE=0), and fails instead when DIALBRIDGE_REQUIRE_NATIVE=1 (CI): a
    silent fallback to the Python path must not pass there."""
    from dialbridge.media.dataplane import native

    module = native()
    if module is None:
        reason = (
            "the C data plane dialbridge.media._dataplane is not importable (build it with "
            "`python setup.py build_ext --inplace`) or DIALBRIDGE_MEDIA_NATIVE=0 turns it off"
        )
        if os.environ.get(REQUIRE_NATIVE_ENV) == "1":
            pytest.fail(f"{reason}, but {REQUIRE_NATIVE_ENV}=1")
        pytest.skip(reason)
    return module


@pytest.fixture
def dataplane():
    """The C data plane module (skip or fail as :func:`native_dataplane_or_skip`)."""
    return native_dataplane_or_skip()


@pytest.fixture(params=["python", "native"])
def engine_native(request: pytest.FixtureRequest) -> bool:
    """Run a test once on the pure-Python media path and once on the C data plane
    (``MediaEngine(native=...)`` / ``MediaSession(native=...)``)."""
    if request.param == "native":
        native_dataplane_or_skip()
    return request.param == "native"
