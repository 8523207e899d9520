"""Prompts and tones played towards one leg, one 20 ms frame at a time.

Theory of operation
-------------------
A :class:`Prompt` is audio loaded once from a WAV file (PCM 8/16/24/32-bit, float, A-law or
µ-law, any rate, any channel count), down-mixed and resampled to the engine's 8 kHz and cached
per path; its G.711 payloads are cached per codec on first use. A :class:`Tone` is generated:
a sum of sines with an on/off cadence (ringback, busy, beeps). :class:`Pause` is silence.

A :class:`Player` belongs to the sending side of one leg. It holds a queue of playbacks; each
tick ``apply(bridged)`` returns what the leg sends: the bridged audio untouched when idle, the
playback frame in ``REPLACE`` mode, or both summed (with clipping protection) in ``MIX`` mode.
When a playback runs out it is replaced by the next one and a :class:`PlaybackFinished` event
is queued; ``stop`` ends playbacks early and reports them with ``completed=False``. Sans-IO:
the player never looks at a clock, it counts ticks.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dialbridge.media.mixer import mix_pcm

__all__ = [
    "RATE",
    "TONES",
    "Pause",
    "PlayMode",
    "Player",
    "PlaybackFinished",
    "Prompt",
    "Tone",
    "load_prompt",
]

RATE = 8000
FRAME = 160
_prompt_cache: dict[tuple[str, float], Prompt] = {}


class PromptError(ValueError):
    """A prompt file cannot be used (a local configuration error)."""


class PlayMode(enum.Enum):
    REPLACE = "replace"  # the leg hears only the playback
    MIX = "mix"  # the playback is added to the bridged audio


@dataclass(slots=True, frozen=True)
class PlaybackFinished:
    playback_id: str
    completed: bool  # False when stopped before its end
    session_id: str = ""  # the leg that was hearing it


class Prompt:
    """Audio at 8 kHz int16, whole frames (the last one padded with silence)."""

    def __init__(self, pcm: np.ndarray, name: str = "") -> None:
        pcm = np.asarray(pcm, dtype=np.int16)
        pad = (-len(pcm)) % FRAME
        if pad:
            pcm = np.concatenate((pcm, np.zeros(pad, np.int16)))
        self.pcm = pcm
        self.name = name
        self._encoded: dict[str, list[bytes]] = {}

    @property
    def frames(self) -> int:
        return len(self.pcm) // FRAME

    @property
    def duration(self) -> float:
        return len(self.pcm) / RATE

    def frame(self, index: int) -> np.ndarray | None:
        if index >= self.frames:
            return None
        return self.pcm[index * FRAME : (index + 1) * FRAME]

    def encoded(self, codec: str) -> list[bytes]:
        """Payloads of a stateless codec (PCMU, PCMA), encoded once and cached."""
        payloads = self._encoded.get(codec)
        if payloads is None:
            from dialbridge.media.codecs import create_encoder

            enc = create_encoder(codec)
            payloads = [enc.encode(self.frame(i)) for i in range(self.frames)]
            self._encoded[codec] = payloads
        return payloads


def load_prompt(path: str | Path) -> Prompt:
    """Load a WAV file once (cached by path and modification time)."""
    p = Path(path)
    key = (str(p.resolve()), p.stat().st_mtime)
    prompt = _prompt_cache.get(key)
    if prompt is None:
        rate, samples = _read_wav(p.read_bytes())
        prompt = Prompt(resample(samples, rate, RATE), name=p.stem)
        _prompt_cache[key] = prompt
    return prompt


def _read_wav(data: bytes) -> tuple[int, np.ndarray]:
    """Parse a RIFF/WAVE file into (rate, float64 mono samples scaled to int16 range)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise PromptError("not a RIFF/WAVE file")
    pos, fmt, body = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        chunk = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", chunk, 0)
        elif cid == b"data":
            body = chunk
        pos += 8 + size + (size & 1)
    if fmt is None or body is None:
        raise PromptError("WAV file without fmt or data chunk")
    tag, channels, rate, _, _, bits = fmt
    if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: sub-format is PCM or float
        tag = 3 if bits == 32 and _is_float_extensible(data) else 1
    if tag == 1 and bits == 16:
        x = np.frombuffer(body[: len(body) // 2 * 2], "<i2").astype(np.float64)
    elif tag == 1 and bits == 8:
        x = (np.frombuffer(body, np.uint8).astype(np.float64) - 128.0) * 256.0
    elif tag == 1 and bits == 24:
        raw = np.frombuffer(body[: len(body) // 3 * 3], np.uint8).reshape(-1, 3).astype(np.int32)
        v = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / 256.0).astype(np.float64)
    elif tag == 1 and bits == 32:
        x = np.frombuffer(body[: len(body) // 4 * 4], "<i4").astype(np.float64) / 65536.0
    elif tag == 3:
        dtype = "<f4" if bits == 32 else "<f8"
        x = np.frombuffer(body[: len(body) // (bits // 8) * (bits // 8)], dtype) * 32767.0
    elif tag in (6, 7):
        from dialbridge.media.codecs.g711 import alaw_decode, ulaw_decode

        x = (alaw_decode if tag == 6 else ulaw_decode)(body).astype(np.float64)
    else:
        raise PromptError(f"unsupported WAV format tag {tag} with {bits} bits")
    if channels > 1:
        x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)
    return rate, x


def _is_float_extensible(data: bytes) -> bool:
    i = data.find(b"fmt ")
    # The sub-format GUID starts at offset 24 of the fmt body; its first two bytes are the tag.
    return i >= 0 and struct.unpack_from("<H", data, i + 8 + 24)[0] == 3


def resample(x: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Whole-signal FFT resampling (done once per prompt, so an ideal filter is affordable)."""
    if rate != new_rate and len(x):
        n = max(1, round(len(x) * new_rate / rate))
        spec = np.fft.rfft(x)
        keep = n // 2 + 1
        if keep <= len(spec):
            spec = spec[:keep]
        else:
            spec = np.concatenate((spec, np.zeros(keep - len(spec), spec.dtype)))
        x = np.fft.irfft(spec, n) * (n / len(x))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


class Tone:
    """A generated tone: frequencies summed, on/off cadence in seconds, repeated."""

    def __init__(
        self,
        frequencies: tuple[float, ...],
        cadence: tuple[float, ...] = (),
        *,
        level_dbov: float = -16.0,
        duration: float | None = None,
        name: str = "",
    ) -> None:
        self.frequencies = frequencies
        self.cadence = cadence
        self.duration = duration
        self.name = name
        amplitude = 32767.0 * 10 ** (level_dbov / 20) * np.sqrt(2) / len(frequencies)
        cycle = sum(cadence) if cadence else 1.0
        n = round(cycle * RATE)
        n += (-n) % FRAME
        t = np.arange(n) / RATE
        wave = sum(np.sin(2 * np.pi * f * t) for f in frequencies) * amplitude
        if cadence:
            gate = np.zeros(n, bool)
            start = 0.0
            for i, span in enumerate(cadence):
                if i % 2 == 0:
                    gate[round(start * RATE) : round((start + span) * RATE)] = True
                start += span
            wave = wave * gate
        self.cycle = np.clip(wave, -32767, 32767).astype(np.int16)

    @property
    def frames(self) -> int | None:
        return None if self.duration is None else round(self.duration * RATE / FRAME)

    def frame(self, index: int) -> np.ndarray | None:
        limit = self.frames
        if limit is not None and index >= limit:
            return None
        start = (index * FRAME) % len(self.cycle)
        return self.cycle[start : start + FRAME]


class Pause:
    """Silence of a given length (for gaps between prompts)."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self._frames = round(duration * RATE / FRAME)
        self._silence = np.zeros(FRAME, np.int16)

    def frame(self, index: int) -> np.ndarray | None:
        return self._silence if index < self._frames else None


TONES: dict[str, Tone] = {
    # ITU-T E.180 Suppl. 2 / ETSI ES 201 970: Europe ringback 425 Hz, 1 s on 4 s off.
    "ringback_eu": Tone((425.0,), (1.0, 4.0), name="ringback_eu"),
    # ANSI T1.401 / North American precise tones: 440+480 Hz, 2 s on 4 s off.
    "ringback_us": Tone((440.0, 480.0), (2.0, 4.0), name="ringback_us"),
    "busy_eu": Tone((425.0,), (0.5, 0.5), name="busy_eu"),
    "busy_us": Tone((480.0, 620.0), (0.5, 0.5), name="busy_us"),
    "beep": Tone((1000.0,), duration=0.2, name="beep"),
    "double_beep": Tone((1000.0,), (0.15, 0.1), duration=0.4, name="double_beep"),
}


@dataclass(slots=True)
class _Playback:
    playback_id: str
    source: Prompt | Tone | Pause
    mode: PlayMode
    index: int = 0


class Player:
    """Queue of playbacks for one sending direction."""

    def __init__(self, session_id: str = "") -> None:
        self.session_id = session_id
        self._queue: deque[_Playback] = deque()
        self.events: list[PlaybackFinished] = []

    @property
    def active(self) -> bool:
        return bool(self._queue)

    @property
    def current_id(self) -> str | None:
        return self._queue[0].playback_id if self._queue else None

    def play(self, playback_id: str, source: Prompt | Tone | Pause, mode: PlayMode) -> None:
        """Queue a playback after whatever is playing."""
        self._queue.append(_Playback(playback_id, source, mode))

    def stop(self, playback_id: str | None = None) -> None:
        """Stop one playback (queued or playing), or all of them."""
        keep: deque[_Playback] = deque()
        for pb in self._queue:
            if playback_id is None or pb.playback_id == playback_id:
                self.events.append(PlaybackFinished(pb.playback_id, False, self.session_id))
            else:
                keep.append(pb)
        self._queue = keep

    def pop_events(self) -> list[PlaybackFinished]:
        events, self.events = self.events, []
        return events

    def apply(self, bridged: np.ndarray | None) -> np.ndarray | None:
        """One tick: what this direction sends, given the bridged audio (None = none)."""
        queue = self._queue
        while queue:
            pb = queue[0]
            frame = pb.source.frame(pb.index)
            if frame is None:
                queue.popleft()
                self.events.append(PlaybackFinished(pb.playback_id, True, self.session_id))
                continue
            pb.index += 1
            if pb.mode is PlayMode.REPLACE or bridged is None:
                return frame
            return mix_pcm([bridged, frame])
        return bridged
