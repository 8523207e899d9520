"""Audio codecs behind one small interface.

Internal audio format: numpy ``int16`` mono frames of 20 ms at the codec's PCM rate. The
engine's internal rate is 8000 Hz (160 samples per frame): PSTN audio is narrowband, and
Opus with 8 kHz input and output is 3-4x cheaper than at 48 kHz (docs/media-primitives.md).

* ``Encoder.encode(pcm)`` takes one frame of ``CodecInfo.samples_per_frame`` int16 samples
  and returns one RTP payload.
* ``Decoder.decode(payload)`` returns the int16 samples of one payload (160 for a 20 ms
  packet at 8 kHz; a peer may send other packet durations, so do not assume the length).
  An empty payload (a hole-punch packet) is treated as a lost packet; an undecodable one
  raises :class:`PayloadError`.
* ``Decoder.conceal(next_payload=None)`` returns one frame replacing a lost packet:
  Opus uses libopus PLC, or in-band FEC recovered from ``next_payload`` when the jitter
  buffer already holds the packet after the gap; G.711 repeats the last frame attenuated,
  then fades to silence.

Codec names are the RTP/SDP encoding names (RFC 3551 §6, RFC 7587 §7, RFC 4733 §7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "CODECS",
    "CodecError",
    "CodecInfo",
    "Decoder",
    "Encoder",
    "PayloadError",
    "create_decoder",
    "create_encoder",
]

FRAME_MS = 20


class CodecError(RuntimeError):
    """A codec library failed or was misused (local error)."""


class PayloadError(ValueError):
    """The peer sent a payload the decoder cannot decode (remote error: treat it as lost)."""


class Encoder(Protocol):
    info: CodecInfo

    def encode(self, pcm: np.ndarray) -> bytes: ...


class Decoder(Protocol):
    info: CodecInfo

    def decode(self, payload: bytes) -> np.ndarray: ...

    def conceal(self, next_payload: bytes | None = None) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """Static facts about one codec as we use it.

    ``clock_rate`` is the RTP clock (SDP rtpmap), ``pcm_rate`` the rate of the int16 frames the
    encoder takes and the decoder returns. ``rtp_samples_per_frame`` is the RTP timestamp
    increment per 20 ms packet.
    """

    name: str
    clock_rate: int
    channels: int
    pcm_rate: int
    static_payload_type: int | None = None

    @property
    def samples_per_frame(self) -> int:
        return self.pcm_rate * FRAME_MS // 1000

    @property
    def rtp_samples_per_frame(self) -> int:
        return self.clock_rate * FRAME_MS // 1000


CODECS: dict[str, CodecInfo] = {
    # RFC 3551 §4.5.14 / Table 4: static payload types 0 and 8.
    "PCMU": CodecInfo("PCMU", 8000, 1, 8000, static_payload_type=0),
    "PCMA": CodecInfo("PCMA", 8000, 1, 8000, static_payload_type=8),
    # RFC 3551 §4.5.2: G.722 samples at 16 kHz but its RTP clock is 8000 (kept for
    # compatibility); the codec takes and returns the engine's 8 kHz frames (codecs/g722.py).
    "G722": CodecInfo("G722", 8000, 1, 8000, static_payload_type=9),
    # RFC 7587 §7: always "opus/48000/2" in SDP and a 48 kHz RTP clock, whatever the audio
    # bandwidth; we send mono content and run libopus at 8 kHz.
    "opus": CodecInfo("opus", 48000, 2, 8000),
    # RFC 4733 §7.1.1: telephone-event/8000, events only (no PCM), see media/dtmf.py.
    "telephone-event": CodecInfo("telephone-event", 8000, 1, 8000),
}


def _lookup(name: str) -> CodecInfo:
    for key, info in CODECS.items():
        if key.lower() == name.lower():
            return info
    raise KeyError(f"unknown codec {name!r}")


def create_encoder(name: str, **opts: Any) -> Encoder:
    """Create an encoder for ``name`` (case-insensitive SDP encoding name)."""
    info = _lookup(name)
    if info.name in ("PCMU", "PCMA"):
        from .g711 import G711Encoder

        return G711Encoder(info.name, **opts)
    if info.name == "opus":
        from .opus import OpusEncoder

        return OpusEncoder(**opts)
    if info.name == "G722":
        from .g722 import G722Encoder

        return G722Encoder(**opts)
    raise KeyError(f"{info.name} has no audio encoder (see media/dtmf.py for telephone-event)")


def create_decoder(name: str, **opts: Any) -> Decoder:
    """Create a decoder (with loss concealment) for ``name``."""
    info = _lookup(name)
    if info.name in ("PCMU", "PCMA"):
        from .g711 import G711Decoder

        return G711Decoder(info.name, **opts)
    if info.name == "opus":
        from .opus import OpusDecoder

        return OpusDecoder(**opts)
    if info.name == "G722":
        from .g722 import G722Decoder

        return G722Decoder(**opts)
    raise KeyError(f"{info.name} has no audio decoder (see media/dtmf.py for telephone-event)")
