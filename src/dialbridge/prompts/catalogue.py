"""The prompt catalogue: a key and a language in, the path of a playable WAV file out.

Theory of operation
-------------------
``PromptCatalogue(cache_dir, override_dir, languages).path(key, language)`` answers in this
order:

1. **An admin's recording** ``<override_dir>/<language>/<key>.<ext>``. A ``.wav`` file is used
   as it is (the media engine reads PCM, float, A-law and µ-law WAV at any rate,
   :func:`dialbridge.media.playback.load_prompt`); any other format sox reads (``.flac``,
   ``.ogg``, ``.au``, ...) is converted once into the cache.
2. **The rendered prompt** ``<cache_dir>/wav8k/<language>/<key>.<hash>.wav``: the text of
   :mod:`dialbridge.prompts.texts`, spoken by espeak-ng and converted by sox to 8 kHz 16-bit
   mono PCM. The hash covers the text (after placeholders), the voice, the speed and
   :data:`RENDER_VERSION`, so a changed text or key map renders anew and stale files are
   swept by :meth:`PromptCatalogue.ensure_built`.

Rendering happens at first use (about 20-50 ms a prompt) or for everything at once with
:meth:`ensure_built` (``dialbridge prompts build``). "Per codec": the media engine takes one
8 kHz PCM file and encodes it to PCMA/PCMU/Opus itself, once per prompt, in memory
(``Prompt.encoded``), so the only cached format is ``wav8k``; the ``codec`` argument of
:meth:`path` exists for callers that pass the leg's codec and selects that format.

An unknown key or language is a local error (:class:`UnknownPromptError`) whose message
lists what exists; a rendering failure (espeak-ng or sox missing or failing) is
:class:`PromptRenderError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dialbridge.prompts.texts import KEYS, SPOKEN_KEYS, TEXTS, VOICES

__all__ = [
    "RENDER_VERSION",
    "PromptCatalogue",
    "PromptError",
    "PromptRenderError",
    "UnknownPromptError",
    "spoken_keys",
]

log = logging.getLogger(__name__)

#: Bump when the rendering pipeline changes, so every cached file is rendered again.
RENDER_VERSION = 1
#: The one cached format: what :mod:`dialbridge.media.playback` plays without resampling.
CACHE_FORMAT = "wav8k"
RATE = 8000
#: Extensions accepted in the override directory, in order of preference.
OVERRIDE_EXTENSIONS = (".wav", ".flac", ".ogg", ".au", ".aiff", ".aif")
#: Placeholders for the in-call key map (see texts.py) and their defaults.
DEFAULT_KEYS = {"mute_keys": "*6", "hand_keys": "*9", "help_keys": "*1"}


class PromptError(Exception):
    """Base class of the catalogue's errors."""


class UnknownPromptError(PromptError, LookupError):
    """No such key, or no such language: a local (configuration or code) error."""


class PromptRenderError(PromptError, RuntimeError):
    """espeak-ng or sox is missing or failed."""


def spoken_keys(keys: str, language: str) -> str:
    """``*6`` → ``star 6`` (``Stern 6``): how a key sequence is read out."""
    words = SPOKEN_KEYS.get(language, SPOKEN_KEYS["en"])
    return " ".join(words.get(k, k) for k in keys)


class PromptCatalogue:
    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        override_dir: str | os.PathLike[str] | None = None,
        languages: Iterable[str] = ("en", "de"),
        *,
        keys: Mapping[str, str] | None = None,
        speed: int = 160,
        espeak: str = "espeak-ng",
        sox: str = "sox",
    ) -> None:
        """``keys``: the in-call key sequences as ``{"mute_keys": "*6", "hand_keys": "*9",
        "help_keys": "*1"}`` (missing entries keep those defaults). ``languages``: the
        languages offered, in menu order (the first is digit 1 of ``language_menu``)."""
        self.cache_dir = Path(cache_dir)
        self.override_dir = Path(override_dir) if override_dir else None
        self.languages = tuple(languages)
        if not self.languages:
            raise ValueError("at least one prompt language is needed")
        for lang in self.languages:
            if lang not in TEXTS or lang not in VOICES:
                raise UnknownPromptError(
                    f"no prompt texts for language {lang!r} (available: {', '.join(TEXTS)})"
                )
        unknown = set(keys or ()) - set(DEFAULT_KEYS)
        if unknown:
            raise ValueError(f"unknown key placeholders {sorted(unknown)}")
        self.keys = {**DEFAULT_KEYS, **(keys or {})}
        self.speed = speed
        self.espeak = espeak
        self.sox = sox

    # -- lookup ----------------------------------------------------------------------------

    def _check(self, key: str, language: str) -> None:
        if key not in KEYS:
            raise UnknownPromptError(
                f"unknown prompt key {key!r}; known keys: {', '.join(sorted(KEYS))}"
            )
        if language not in self.languages:
            raise UnknownPromptError(
                f"prompt language {language!r} is not configured "
                f"(configured: {', '.join(self.languages)})"
            )

    def text(self, key: str, language: str) -> str:
        """The words of a prompt, placeholders filled in."""
        self._check(key, language)
        values = {name: spoken_keys(seq, language) for name, seq in self.keys.items()}
        values["menu_digit"] = str(self.languages.index(language) + 1)
        text = TEXTS[language][key]
        unbound = [name for name, seq in self.keys.items() if not seq]
        if unbound:
            # A control without keys: drop the sentences that would tell the caller to press
            # them ("Press star 9 to raise your hand.").
            sentences = re.split(r"(?<=[.!?])\s+", text)
            kept = [x for x in sentences if not any("{" + name + "}" in x for name in unbound)]
            text = " ".join(kept) or text
        return text.format(**values)

    def override(self, key: str, language: str) -> Path | None:
        """The admin's recording for this key and language, if there is one."""
        self._check(key, language)
        if self.override_dir is None:
            return None
        folder = self.override_dir / language
        for ext in OVERRIDE_EXTENSIONS:
            candidate = folder / f"{key}{ext}"
            if candidate.is_file():
                return candidate
        return None

    def path(self, key: str, language: str, codec: str | None = None) -> Path:
        """A WAV file to play for ``key`` in ``language``: the admin's recording if one was
        dropped in, else the rendered prompt (rendered now if needed)."""
        recording = self.override(key, language)
        if recording is not None:
            if recording.suffix == ".wav":
                return recording
            return self._converted(recording, language)
        return self._rendered(key, language)

    async def path_async(self, key: str, language: str, codec: str | None = None) -> Path:
        """:meth:`path` off the event loop (rendering runs two subprocesses)."""
        return await asyncio.to_thread(self.path, key, language, codec)

    def speak(self, text: str, language: str) -> Path:
        """Render free text (e.g. "Calling +49 30 1234") once and cache it by its hash."""
        if language not in self.languages:
            raise UnknownPromptError(f"prompt language {language!r} is not configured")
        return self._render_to_cache("speech", text, language)

    # -- building --------------------------------------------------------------------------

    def ensure_built(self) -> list[Path]:
        """Render every key in every language that has no recording; sweep stale renders.
        Returns the path used for every (key, language), in a stable order."""
        jobs = [(key, lang) for lang in self.languages for key in sorted(KEYS)]
        # Each render is two short subprocesses: a few in parallel use both cores.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            paths = list(pool.map(lambda job: self.path(*job), jobs))
        for language in self.languages:
            self._sweep(language)
        return paths

    def _sweep(self, language: str) -> None:
        folder = self.cache_dir / CACHE_FORMAT / language
        if not folder.is_dir():
            return
        wanted = {self._cache_name(k, self.text(k, language), language) for k in KEYS}
        for item in folder.glob("*.wav"):
            stem_key = item.name.split(".", 1)[0]
            if stem_key in KEYS and item.name not in wanted:
                item.unlink(missing_ok=True)

    # -- rendering -------------------------------------------------------------------------

    def _cache_name(self, key: str, text: str, language: str) -> str:
        spec = f"{RENDER_VERSION}\0{VOICES[language]}\0{self.speed}\0{text}"
        return f"{key}.{hashlib.sha256(spec.encode()).hexdigest()[:12]}.wav"

    def _rendered(self, key: str, language: str) -> Path:
        return self._render_to_cache(key, self.text(key, language), language)

    def _render_to_cache(self, key: str, text: str, language: str) -> Path:
        target = self.cache_dir / CACHE_FORMAT / language / self._cache_name(key, text, language)
        if target.is_file() and target.stat().st_size > 44:
            return target
        # The text goes in on stdin, so free text starting with "-" is never an option.
        speech = self._run(
            [self._tool(self.espeak), "-v", VOICES[language], "-s", str(self.speed), "--stdout"],
            text.encode("utf-8"),
            want_output=True,
        )
        self._write_8k(speech, "wav", target)
        log.info("rendered prompt %s/%s -> %s", language, key, target)
        return target

    def _converted(self, recording: Path, language: str) -> Path:
        stat = recording.stat()
        spec = f"{RENDER_VERSION}\0{recording.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        name = f"{recording.stem}.rec-{hashlib.sha256(spec.encode()).hexdigest()[:12]}.wav"
        target = self.cache_dir / CACHE_FORMAT / language / name
        if not target.is_file():
            self._write_8k(recording.read_bytes(), recording.suffix.lstrip("."), target)
        return target

    def _write_8k(self, audio: bytes, kind: str, target: Path) -> None:
        """sox: any input → 8 kHz 16-bit mono PCM WAV, a little silence around it, peaks at
        -3 dBFS. Written beside the target and renamed, so readers never see half a file."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            self._run(
                [self._tool(self.sox), "-q", "-t", kind, "-", "-r", str(RATE), "-c", "1",
                 "-b", "16", "-e", "signed-integer", "-t", "wav", str(partial),
                 "pad", "0.05", "0.15", "norm", "-3"],
                audio,
                want_output=False,
            )  # fmt: skip
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    @staticmethod
    def _tool(name: str) -> str:
        found = shutil.which(name)
        if found is None:
            raise PromptRenderError(f"{name} is not installed (Debian packages espeak-ng and sox)")
        return found

    @staticmethod
    def _run(argv: list[str], stdin: bytes, *, want_output: bool) -> bytes:
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PromptRenderError(f"{argv[0]} failed: {exc}") from exc
        if done.returncode != 0 or (want_output and not done.stdout):
            err = done.stderr.decode(errors="replace").strip()
            raise PromptRenderError(f"{Path(argv[0]).name} exited {done.returncode}: {err}")
        return done.stdout
