"""G.722 (64 kbit/s SB-ADPCM) through PyAV's FFmpeg ``g722`` codec, at the engine's 8 kHz.

G.722 codes 16 kHz audio, but RFC 3551 §4.5.2 gives it an RTP clock of 8000 Hz (a historical
error kept for compatibility): a 20 ms packet is 160 bytes and advances the timestamp by 160.
The engine runs at 8 kHz, so the encoder up-samples each 160-sample frame to 320 samples and the
decoder down-samples (media/audio.py). That keeps interop with G.722-only peers; the wideband
half of the spectrum is not carried through the engine.

FFmpeg's G.722 decoder has no loss concealment; ``conceal`` repeats the last decoded frame
attenuated and then goes silent, like G.711 (the ADPCM state simply continues with the next
packet).
"""

from __future__ import annotations

import av
import numpy as np

from ..audio import Downsampler2x, Upsampler2x
from . import CODECS, CodecInfo, PayloadError

__all__ = ["G722Decoder", "G722Encoder"]

CODEC_RATE = 16000


class G722Encoder:
    __slots__ = ("info", "_ctx", "_up", "_pts")

    def __init__(self) -> None:
        self.info: CodecInfo = CODECS["G722"]
        ctx = av.CodecContext.create("g722", "w")
        ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = CODEC_RATE, "mono", "s16", 64000
        ctx.open()
        self._ctx = ctx
        self._up = Upsampler2x()
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        if pcm.dtype != np.int16 or pcm.shape != (self.info.samples_per_frame,):
            raise ValueError("G.722 encoder takes 160 int16 samples at 8 kHz")
        wide = self._up.process(pcm)
        frame = av.AudioFrame.from_ndarray(wide.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = CODEC_RATE
        frame.pts = self._pts
        self._pts += len(wide)
        return b"".join(bytes(p) for p in self._ctx.encode(frame))


class G722Decoder:
    __slots__ = ("info", "_ctx", "_down", "_last", "_lost_run", "max_repeats")

    def __init__(self, max_repeats: int = 3) -> None:
        self.info: CodecInfo = CODECS["G722"]
        ctx = av.CodecContext.create("g722", "r")
        ctx.sample_rate, ctx.layout = CODEC_RATE, "mono"
        ctx.open()
        self._ctx = ctx
        self._down = Downsampler2x()
        self._last: np.ndarray | None = None
        self._lost_run = 0
        self.max_repeats = max_repeats

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:  # a hole-punch packet: treat as lost
            return self.conceal()
        try:
            frames = self._ctx.decode(av.Packet(payload))
        except av.error.FFmpegError as exc:
            raise PayloadError(f"G.722 payload rejected: {exc}") from exc
        if not frames:
            return self.conceal()
        wide = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)
        pcm = self._down.process(wide)
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
