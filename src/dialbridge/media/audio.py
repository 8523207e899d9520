"""PCM helpers: stateful factor-2 resampling between the engine's 8 kHz and 16 kHz.

The engine runs at 8 kHz (see codecs/__init__.py). A 16 kHz codec (G.722) still takes and
returns 8 kHz frames; these two small sans-IO filters do the conversion inside it, frame by
frame, with exact output lengths (160 in -> 320 out, 320 in -> 160 out) and a constant delay.

Filter: one linear-phase low-pass FIR (windowed sinc, Kaiser window), cut-off at 3.8 kHz of
the 16 kHz rate, used for both the interpolation image rejection and the decimation
anti-aliasing. The filter history carries across frames, so there are no edge clicks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Downsampler2x", "Upsampler2x", "halfband_lowpass"]


def halfband_lowpass(taps: int = 48, cutoff_hz: float = 3800.0, rate: int = 16000) -> np.ndarray:
    """Windowed-sinc low-pass FIR with unity DC gain (``taps`` even: the 2x phases align)."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff_hz / rate * n) * np.kaiser(taps, 8.0)
    return (h / h.sum()).astype(np.float32)


class Upsampler2x:
    """8 kHz -> 16 kHz, frame by frame: zero-stuffing then the low-pass (gain 2)."""

    __slots__ = ("_h0", "_h1", "_history")

    def __init__(self, taps: int = 48) -> None:
        h = halfband_lowpass(taps) * 2.0
        # Polyphase: even output samples use the even taps, odd ones the odd taps.
        self._h0 = np.ascontiguousarray(h[0::2])
        self._h1 = np.ascontiguousarray(h[1::2])
        self._history = np.zeros(len(self._h0) - 1, dtype=np.float32)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        x = np.concatenate((self._history, pcm.astype(np.float32)))
        self._history = x[len(x) - len(self._history) :]
        out = np.empty(2 * len(pcm), dtype=np.float32)
        out[0::2] = np.convolve(x, self._h0, mode="valid")
        out[1::2] = np.convolve(x, self._h1, mode="valid")
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)


class Downsampler2x:
    """16 kHz -> 8 kHz, frame by frame: the low-pass, then every second sample."""

    __slots__ = ("_h", "_history")

    def __init__(self, taps: int = 48) -> None:
        self._h = halfband_lowpass(taps)
        self._history = np.zeros(taps - 1, dtype=np.float32)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        x = np.concatenate((self._history, pcm.astype(np.float32)))
        self._history = x[len(x) - len(self._history) :]
        y = np.convolve(x, self._h, mode="valid")[1::2]
        return np.clip(np.round(y), -32768, 32767).astype(np.int16)
