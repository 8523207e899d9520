"""A minimal prompt catalogue rendered with espeak-ng, used until (and wherever) the real one
in :mod:`dialbridge.prompts` has no file for a key.

The call layer only needs ``catalogue.path(key, language, codec) -> Path`` (a WAV at any rate;
the media engine resamples). Wording of the inbound prompts follows the reference scenario
(reference-scenarios.md §2.3–2.6) with its TTS spelling tricks removed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "enter_pin": "Please enter the meeting PIN, followed by the pound key.",
        "unknown_pin": "You have specified an unknown meeting PIN.",
        "enter_password": (
            "If your meeting has a password, please enter it now, followed by pound. "
            "Just press pound to join without a password."
        ),
        "connecting": "Connecting you to your meeting, please wait.",
        "could_not_join": (
            "We could not join you to the meeting. Please check the PIN and the password."
        ),
        "no_input": "We did not receive any input, please try again later.",
        "try_later": "Too many wrong attempts. Please try again later.",
        "goodbye": "Goodbye.",
        "calling": "Calling.",
        "time_warning": "Your call will end in one minute.",
        "time_up": "Time limit reached. Goodbye.",
    },
    "de": {
        "enter_pin": "Bitte geben Sie die PIN der Besprechung ein, gefolgt von der Raute-Taste.",
        "unknown_pin": "Diese PIN ist unbekannt.",
        "enter_password": (
            "Wenn Ihre Besprechung ein Passwort hat, geben Sie es jetzt ein, gefolgt von Raute. "
            "Ohne Passwort drücken Sie nur die Raute-Taste."
        ),
        "connecting": "Sie werden mit Ihrer Besprechung verbunden, bitte warten Sie.",
        "could_not_join": ("Wir konnten Sie nicht verbinden. Bitte prüfen Sie PIN und Passwort."),
        "no_input": "Wir haben keine Eingabe erhalten. Bitte versuchen Sie es später noch einmal.",
        "try_later": "Zu viele falsche Versuche. Bitte versuchen Sie es später noch einmal.",
        "goodbye": "Auf Wiederhören.",
        "calling": "Es wird angerufen.",
        "time_warning": "Ihr Anruf endet in einer Minute.",
        "time_up": "Die maximale Gesprächsdauer ist erreicht. Auf Wiederhören.",
    },
}


class PromptCatalogue(Protocol):
    def path(self, key: str, language: str, codec: str) -> Path: ...


class EspeakPrompts:
    """Renders each (key, language) once into ``cache_dir`` with espeak-ng (~20 ms a prompt)."""

    def __init__(self, cache_dir: Path, *, speed: int = 165) -> None:
        self.cache_dir = Path(cache_dir)
        self.speed = speed

    def path(self, key: str, language: str, codec: str = "") -> Path:
        texts = TEXTS.get(language) or TEXTS["en"]
        text = texts.get(key) or TEXTS["en"].get(key)
        if text is None:
            raise KeyError(f"no prompt {key!r}")
        digest = hashlib.sha256(f"{language}\0{self.speed}\0{text}".encode()).hexdigest()[:12]
        target = self.cache_dir / f"{key}.{language}.{digest}.wav"
        if not target.exists():
            espeak = shutil.which("espeak-ng")
            if espeak is None:
                raise FileNotFoundError("espeak-ng is not installed (Debian package espeak-ng)")
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".tmp")
            voice = language if language in TEXTS else "en"
            subprocess.run(
                [espeak, "-v", voice, "-s", str(self.speed), "-w", str(partial), text],
                check=True,
                capture_output=True,
                timeout=30,
            )
            partial.replace(target)
        return target


class LayeredPrompts:
    """Ask ``primary`` first, fall back to ``fallback`` for keys it cannot provide."""

    def __init__(self, primary: PromptCatalogue | None, fallback: PromptCatalogue) -> None:
        self.primary = primary
        self.fallback = fallback

    def path(self, key: str, language: str, codec: str) -> Path:
        if self.primary is not None:
            try:
                found = self.primary.path(key, language, codec)
                if Path(found).exists():
                    return Path(found)
            except (KeyError, FileNotFoundError, LookupError, OSError):
                pass
        return self.fallback.path(key, language, codec)
