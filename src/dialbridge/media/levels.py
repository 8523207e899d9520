"""RFC 6464 client-to-mixer audio levels: dBov per frame, a small VAD, the header element.

Theory of operation
-------------------
RFC 6464 §3 sends, per RTP packet, one byte: the V flag (bit 7, "this packet contains voice")
and the level in -dBov (0 = loudest, 127 = -127 dBov or quieter). dBov is relative to the
overload point: a full-scale square wave is 0 dBov and a full-scale sine about -3 dBov
(RFC 6465 Appendix A computes it as the RMS of the frame relative to full scale).

Jigasi drops every received packet whose level is 127 ("muted",
``SsrcTransformEngine.DROP_MUTED_AUDIO_SOURCE_IN_REVERSE_TRANSFORM``, jigasi-protocol.md §5.4),
so :class:`AudioLevelMeter` never emits 127 for a voiced frame, and by default never emits it
at all (``max_level=126``): Jigasi also watches for 10 s without RTP (§1.6), and a muted or
silent phone must keep reaching it. Pass ``max_level=127`` only to mean "drop this packet".

The V flag comes from an energy VAD: a frame is voice when it is well above a tracked noise
floor and above an absolute floor, with a hangover so word endings and short pauses stay
voiced. It is deliberately simple: the bridge only needs it for the V bit and for the
"N loudest speakers" choice, which uses the level anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AUDIO_LEVEL_URI",
    "CSRC_AUDIO_LEVEL_URI",
    "AudioLevel",
    "AudioLevelMeter",
    "dbov",
    "dbov_to_level",
    "encode_audio_level",
    "frame_dbov",
    "parse_audio_level",
    "parse_csrc_audio_levels",
]

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"  # RFC 6464 §4
CSRC_AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:csrc-audio-level"  # RFC 6465 §4
LEVEL_MIN_DBOV = -127.0
FULL_SCALE = 32768.0
_FULL_SCALE_POWER = FULL_SCALE * FULL_SCALE
# The VAD noise floor never goes below this, so after digital silence it re-learns line noise
# within a few seconds (0.15 dB per frame).
FLOOR_MIN_DBOV = -80.0


@dataclass(frozen=True, slots=True)
class AudioLevel:
    """One frame's RFC 6464 value: ``level`` in -dBov (0..127) and the V flag."""

    level: int
    voice: bool

    def to_bytes(self) -> bytes:
        return encode_audio_level(self.level, self.voice)


def dbov(pcm: np.ndarray) -> float:
    """Level of one int16 frame in dBov (RFC 6465 Appendix A); -inf for digital silence."""
    x = pcm.astype(np.float32)
    power = float(np.dot(x, x)) / max(len(x), 1)
    if power <= 0.0:
        return -math.inf
    return 10.0 * math.log10(power / _FULL_SCALE_POWER)


def frame_dbov(frames: np.ndarray) -> np.ndarray:
    """dBov of every row of a (frames, samples) int16 array, vectorised; -inf for silence."""
    x = frames.astype(np.float32)
    power = np.einsum("ij,ij->i", x, x) / frames.shape[1]
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(power / _FULL_SCALE_POWER)


def dbov_to_level(value: float) -> int:
    """-dBov rounded and clamped to the RFC 6464 range 0..127."""
    if value != value or value <= LEVEL_MIN_DBOV:  # NaN or quieter than -127 dBov
        return 127
    return min(127, max(0, int(round(-value))))


def encode_audio_level(level: int, voice: bool) -> bytes:
    """The one-byte RFC 6464 §3 element data (use with extension id 1 for Jigasi)."""
    if not 0 <= level <= 127:
        raise ValueError(f"audio level {level} is outside 0..127")
    return bytes(((0x80 if voice else 0) | level,))


def parse_audio_level(data: bytes) -> AudioLevel:
    """Parse RFC 6464 element data (one byte; longer data from padding is tolerated)."""
    if not data:
        raise ValueError("empty audio level element")
    b = data[0]
    return AudioLevel(level=b & 0x7F, voice=bool(b & 0x80))


def parse_csrc_audio_levels(data: bytes, csrcs: list[int]) -> dict[int, int]:
    """RFC 6465 §3: one byte per CSRC, in CSRC-list order (MSB reserved, 7-bit -dBov level).

    Jigasi in mixer mode can send these for the conference participants it mixed. Extra bytes
    (element padding) are ignored; a short element gives levels for the first CSRCs only.
    """
    return {csrc: b & 0x7F for csrc, b in zip(csrcs, data, strict=False)}


class AudioLevelMeter:
    """Per-stream level meter with an energy VAD (sans-IO; one per sending stream).

    ``measure(pcm)`` -> :class:`AudioLevel` for that 20 ms frame.

    VAD: voice when the frame is ``margin_db`` above the noise floor *and* above
    ``absolute_floor_dbov``; once voice is seen, V stays set for ``hangover_frames`` more
    frames. The noise floor follows quieter frames at once and rises by ``floor_rise_db`` per
    frame otherwise (7.5 dB/s), so a steady background is learnt within a few seconds while
    the dips between syllables keep the floor under running speech.
    """

    __slots__ = (
        "margin_db",
        "absolute_floor_dbov",
        "hangover_frames",
        "floor_rise_db",
        "max_level",
        "noise_floor_dbov",
        "_hangover",
        "_scratch",
    )

    def __init__(
        self,
        margin_db: float = 12.0,
        absolute_floor_dbov: float = -55.0,
        hangover_frames: int = 10,
        floor_rise_db: float = 0.15,
        max_level: int = 126,
    ) -> None:
        if not 0 <= max_level <= 127:
            raise ValueError("max_level must be within 0..127")
        self.margin_db = margin_db
        self.absolute_floor_dbov = absolute_floor_dbov
        self.hangover_frames = hangover_frames
        self.floor_rise_db = floor_rise_db
        self.max_level = max_level
        self.noise_floor_dbov = FLOOR_MIN_DBOV
        self._hangover = 0
        self._scratch = np.empty(160, dtype=np.float32)

    def measure(self, pcm: np.ndarray) -> AudioLevel:
        return self.measure_dbov(dbov(pcm))

    def measure_dbov(self, value: float) -> AudioLevel:
        byte = self.measure_byte(value)
        return AudioLevel(byte & 0x7F, bool(byte & 0x80))

    def level_byte(self, pcm: np.ndarray | None) -> int:
        """The RFC 6464 §3 byte (V flag | level) for one frame; ``None`` = digital silence.

        Same value as ``measure(pcm)``, without the intermediate objects (the send path calls
        this once per packet): the frame is converted into a reused float32 buffer."""
        if pcm is None:
            return self.measure_byte(-math.inf)
        scratch = self._scratch
        if pcm.shape[0] != scratch.shape[0]:
            return self.measure_byte(dbov(pcm))
        np.copyto(scratch, pcm)
        power = float(np.dot(scratch, scratch)) / scratch.shape[0]
        if power <= 0.0:
            return self.measure_byte(-math.inf)
        return self.measure_byte(10.0 * math.log10(power / _FULL_SCALE_POWER))

    def measure_byte(self, value: float) -> int:
        """:meth:`measure_dbov` as the RFC 6464 byte (bit 7 = V, bits 0-6 = level)."""
        if value != value or value <= LEVEL_MIN_DBOV:
            level = 127
        else:
            level = min(127, max(0, int(round(-value))))
        if value < self.noise_floor_dbov:
            self.noise_floor_dbov = max(value, FLOOR_MIN_DBOV)
        else:
            self.noise_floor_dbov += self.floor_rise_db
        active = value > self.absolute_floor_dbov and value > self.noise_floor_dbov + self.margin_db
        if active:
            self._hangover = self.hangover_frames
            voice = True
        elif self._hangover > 0:
            self._hangover -= 1
            voice = True
        else:
            voice = False
        if voice:
            if level > 126:
                level = 126  # never "muted" on speech: Jigasi would drop it (§5.4)
            return 0x80 | min(level, self.max_level)
        return min(level, self.max_level)
