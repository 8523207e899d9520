"""G.711 µ-law (PCMU) and A-law (PCMA) with numpy lookup tables.

ITU-T G.711 defines µ-law on 14-bit and A-law on 13-bit uniform PCM. Our samples are 16-bit,
so the input is first reduced to the code's resolution the way the CCITT/Sun reference code
(and Python's ``audioop``) does it: µ-law takes the top 14 bits (arithmetic shift, then sign and
magnitude); A-law takes the top 13 bits and uses the one's complement for negative values. The
compressed codes are G.711 Tables 1a (A-law) and 2a (µ-law): segment (3 bits) and step
(4 bits), with even bits inverted for A-law (XOR 0x55) and all bits inverted for µ-law.
Decoding returns the interval mid-points of those tables, scaled to 16 bits.

The tables are built once at import with vectorised bit arithmetic; tests compare them with a
scalar implementation written from the G.711 decision tables and with ``audioop``.
Encode: one 65536-entry uint8 table indexed by the sample as uint16. Decode: one 256-entry
int16 table indexed by the code.
"""

from __future__ import annotations

import numpy as np

from . import CODECS, CodecInfo

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "G711Decoder",
    "G711Encoder",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]

# Idle (silence) codes: µ-law 0xFF is +0; A-law 0xD5 is the smallest positive step.
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _build_ulaw_encode() -> np.ndarray:
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    v = x >> 2  # 14-bit two's complement
    negative = v < 0
    # G.711 Table 2a with the 33 bias; magnitudes >= 8158 all land on the top code.
    mag = np.minimum(np.where(negative, -v, v), 8158) + 33
    seg = np.zeros_like(mag)
    for s in range(1, 8):
        seg += mag >= (64 << (s - 1))
    step = (mag >> (seg + 1)) & 0x0F
    code = (seg << 4) | step
    return np.where(negative, code ^ 0x7F, code ^ 0xFF).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    seg = (u >> 4) & 0x07
    mag = (((u & 0x0F) << 3) + 0x84) << seg  # (2*step + 33) << seg, in 16-bit units (x4)
    return np.where(u & 0x80, 0x84 - mag, mag - 0x84).astype(np.int16)


def _build_alaw_encode() -> np.ndarray:
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    v = x >> 3  # 13-bit two's complement
    negative = v < 0
    mag = np.minimum(np.where(negative, -v - 1, v), 4095)
    seg = np.zeros_like(mag)
    for s in range(1, 8):
        seg += mag >= (32 << (s - 1))  # Table 1a: segment s>=1 starts at 16 << s
    step = np.where(seg == 0, mag >> 1, mag >> np.maximum(seg, 1)) & 0x0F
    code = (seg << 4) | step
    return np.where(negative, code ^ 0x55, code ^ 0xD5).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a >> 4) & 0x07
    t = (a & 0x0F) << 4
    mag = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, mag, -mag).astype(np.int16)


ULAW_ENCODE = _build_ulaw_encode()
ULAW_DECODE = _build_ulaw_decode()
ALAW_ENCODE = _build_alaw_encode()
ALAW_DECODE = _build_alaw_decode()
for _table in (ULAW_ENCODE, ULAW_DECODE, ALAW_ENCODE, ALAW_DECODE):
    _table.flags.writeable = False


def ulaw_encode(pcm: np.ndarray) -> bytes:
    return ULAW_ENCODE[pcm.view(np.uint16)].tobytes()


def ulaw_decode(payload: bytes) -> np.ndarray:
    return ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_encode(pcm: np.ndarray) -> bytes:
    return ALAW_ENCODE[pcm.view(np.uint16)].tobytes()


def alaw_decode(payload: bytes) -> np.ndarray:
    return ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


class G711Encoder:
    """PCMU or PCMA encoder: int16 frame -> payload of one byte per sample."""

    __slots__ = ("info", "_table")

    def __init__(self, name: str = "PCMU") -> None:
        self.info: CodecInfo = CODECS[name]
        self._table = ULAW_ENCODE if name == "PCMU" else ALAW_ENCODE

    def encode(self, pcm: np.ndarray) -> bytes:
        if pcm.dtype != np.int16:
            raise TypeError("G.711 encoder takes int16 samples")
        return self._table.take(pcm.view(np.uint16)).tobytes()  # take: faster than [] here


class G711Decoder:
    """PCMU or PCMA decoder with a simple concealment.

    Concealment (no G.711 Appendix I here, by design: it is cheap and good enough at the loss
    rates the jitter buffer hands us): the first lost frame repeats the last good frame at
    -6 dB, each further one halves again, and after ``max_repeats`` frames it is silence.
    """

    __slots__ = ("info", "_table", "_last", "_lost_run", "max_repeats")

    def __init__(self, name: str = "PCMU", max_repeats: int = 3) -> None:
        self.info: CodecInfo = CODECS[name]
        self._table = ULAW_DECODE if name == "PCMU" else ALAW_DECODE
        self._last: np.ndarray | None = None
        self._lost_run = 0
        self.max_repeats = max_repeats

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:  # a hole-punch packet carries no audio: treat it as a loss
            return self.conceal()
        pcm = self._table[np.frombuffer(payload, dtype=np.uint8)]
        self._last = pcm
        self._lost_run = 0
        return pcm

    def conceal(self, next_payload: bytes | None = None) -> np.ndarray:
        n = self.info.samples_per_frame
        self._lost_run += 1
        if self._last is None or self._lost_run > self.max_repeats:
            return np.zeros(n, dtype=np.int16)
        last = self._last[-n:] if len(self._last) >= n else np.resize(self._last, n)
        return (last >> self._lost_run).astype(np.int16)
