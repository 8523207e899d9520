"""RTP packets (RFC 3550 §5.1) with RFC 8285 header extensions.

Theory of operation
-------------------
This module only turns bytes into :class:`RtpPacket` values and back. It keeps no state
about streams: sequence tracking, loss and jitter live in :mod:`dialbridge.media.rtcp`
(``RtpReceiverStats``), playout in the jitter buffer. Everything here is sans-IO.

A packet that cannot be parsed raises :class:`RtpParseError` (a *remote* error: drop the
datagram, log it, carry on). Asking to serialize something that cannot be represented
(an extension id of 0, a CSRC list longer than 15, ...) raises :class:`RtpBuildError`
(a *local* error: a bug in our code).

Header extensions are kept as ``{id: data}``. Both RFC 8285 forms are parsed (one-byte
header, profile ``0xBEDE``, §4.2; two-byte header, profile ``0x100X``, §4.3). Any other
profile is a plain RFC 3550 §5.3.1 extension: it is kept verbatim in
``unknown_extension`` so that a relay can forward it, and ``extensions`` stays empty.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "RTP_VERSION",
    "RtpBuildError",
    "RtpPacket",
    "RtpParseError",
    "is_rtcp",
    "seq_diff",
    "seq_newer",
    "ts_diff",
    "ts_newer",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12

# RFC 8285 §4.2 / §4.3: "defined by profile" values of the two RFC 8285 forms.
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000  # low 4 bits are "appbits", ignored on receipt
TWO_BYTE_PROFILE_MASK = 0xFFF0

_FIXED = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")


class RtpParseError(ValueError):
    """The peer sent bytes that are not a valid RTP packet (remote error)."""


class RtpBuildError(ValueError):
    """We asked for an RTP packet that cannot be encoded (local error: our bug)."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet, RFC 3550 §5.1.

    ``padding_size`` counts all padding octets including the final count octet (§5.1, P bit);
    0 means no padding. ``extensions`` maps RFC 8285 element ids to their data.
    """

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extensions: dict[int, bytes] = field(default_factory=dict)
    padding_size: int = 0
    # A non-RFC-8285 header extension, (profile, data), forwarded verbatim when present.
    unknown_extension: tuple[int, bytes] | None = None
    # RFC 8285 §4.3 "appbits" of a two-byte-form extension block (0 otherwise).
    extension_appbits: int = 0

    # -- parsing --------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP datagram. Raises :class:`RtpParseError` on anything malformed."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpParseError(f"RTP packet too short ({size} bytes)")
        b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data, 0)
        if b0 >> 6 != RTP_VERSION:
            raise RtpParseError(f"RTP version {b0 >> 6} is not 2")
        cc = b0 & 0x0F
        pos = RTP_HEADER_SIZE + 4 * cc
        if pos > size:
            raise RtpParseError("RTP CSRC list runs past the end of the packet")
        csrc = list(struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE)) if cc else []

        end = size
        padding_size = 0
        if b0 & 0x20:  # §5.1 P: the last octet counts the padding, itself included
            padding_size = data[-1]
            if padding_size == 0:
                raise RtpParseError("RTP padding count is zero")
            end -= padding_size

        extensions: dict[int, bytes] = {}
        unknown_extension = None
        appbits = 0
        if b0 & 0x10:  # §5.3.1 X
            if pos + 4 > end:
                raise RtpParseError("RTP header extension header runs past the end")
            profile, words = _EXT_HEADER.unpack_from(data, pos)
            pos += 4
            ext_end = pos + 4 * words
            if ext_end > end:
                raise RtpParseError("RTP header extension runs past the end of the packet")
            if profile == ONE_BYTE_PROFILE:
                _parse_one_byte_elements(data, pos, ext_end, extensions)
            elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
                _parse_two_byte_elements(data, pos, ext_end, extensions)
                if extensions:  # an empty block is dropped on re-serialisation, appbits too
                    appbits = profile & 0x0F
            else:
                unknown_extension = (profile, bytes(data[pos:ext_end]))
            pos = ext_end

        if pos > end:
            raise RtpParseError("RTP padding overlaps the header")
        return cls(
            payload_type=b1 & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(b1 & 0x80),
            csrc=csrc,
            extensions=extensions,
            padding_size=padding_size,
            unknown_extension=unknown_extension,
            extension_appbits=appbits,
        )

    # -- building -------------------------------------------------------------------------

    def serialize(self) -> bytes:
        """Encode the packet. Uses the one-byte extension form when every element fits it."""
        cc = len(self.csrc)
        if cc > 15:
            raise RtpBuildError("at most 15 CSRCs fit in an RTP header")
        if not 0 <= self.payload_type <= 127:
            raise RtpBuildError(f"payload type {self.payload_type} out of range")
        b0 = (RTP_VERSION << 6) | cc
        parts = [b""]
        if cc:
            parts.append(struct.pack(f"!{cc}I", *self.csrc))
        if self.extensions:
            b0 |= 0x10
            parts.append(_serialize_extensions(self.extensions, self.extension_appbits))
        elif self.unknown_extension is not None:
            b0 |= 0x10
            profile, ext = self.unknown_extension
            if len(ext) % 4:
                raise RtpBuildError("RFC 3550 header extension length must be a multiple of 4")
            parts.append(_EXT_HEADER.pack(profile, len(ext) // 4) + ext)
        parts.append(self.payload)
        if self.padding_size:
            if not 1 <= self.padding_size <= 255:
                raise RtpBuildError("padding_size must be 1..255")
            b0 |= 0x20
            parts.append(bytes(self.padding_size - 1) + bytes((self.padding_size,)))
        parts[0] = _FIXED.pack(
            b0,
            (0x80 if self.marker else 0) | self.payload_type,
            self.sequence_number & 0xFFFF,
            self.timestamp & 0xFFFFFFFF,
            self.ssrc & 0xFFFFFFFF,
        )
        return b"".join(parts)


def _parse_one_byte_elements(data: bytes, pos: int, end: int, out: dict[int, bytes]) -> None:
    # RFC 8285 §4.2: 4-bit id, 4-bit (length - 1); id 0 is a padding byte; id 15 stops parsing.
    while pos < end:
        head = data[pos]
        if head == 0:
            pos += 1
            continue
        ext_id = head >> 4
        if ext_id == 15 or ext_id == 0:
            # §4.2: id 15 ends processing; an id 0 byte that is not 0x00 is no padding and no
            # element either, so we stop there too, keeping the elements before it.
            return
        length = (head & 0x0F) + 1
        pos += 1
        if pos + length > end:
            raise RtpParseError(f"one-byte extension element {ext_id} runs past its block")
        out[ext_id] = bytes(data[pos : pos + length])
        pos += length


def _parse_two_byte_elements(data: bytes, pos: int, end: int, out: dict[int, bytes]) -> None:
    # RFC 8285 §4.3: 8-bit id, 8-bit length (0 allowed); id 0 is a padding byte.
    while pos < end:
        ext_id = data[pos]
        if ext_id == 0:
            pos += 1
            continue
        if pos + 2 > end:
            raise RtpParseError("two-byte extension element header runs past its block")
        length = data[pos + 1]
        pos += 2
        if pos + length > end:
            raise RtpParseError(f"two-byte extension element {ext_id} runs past its block")
        out[ext_id] = bytes(data[pos : pos + length])
        pos += length


def _serialize_extensions(extensions: dict[int, bytes], appbits: int) -> bytes:
    one_byte = all(1 <= i <= 14 and 1 <= len(d) <= 16 for i, d in extensions.items())
    body = bytearray()
    if one_byte:
        profile = ONE_BYTE_PROFILE
        for ext_id, ext in extensions.items():
            body.append((ext_id << 4) | (len(ext) - 1))
            body += ext
    else:
        profile = TWO_BYTE_PROFILE | (appbits & 0x0F)
        for ext_id, ext in extensions.items():
            if not 1 <= ext_id <= 255 or len(ext) > 255:
                raise RtpBuildError(f"extension {ext_id} with {len(ext)} bytes does not fit")
            body.append(ext_id)
            body.append(len(ext))
            body += ext
    body += bytes(-len(body) % 4)  # RFC 8285 §4.1: pad the block to a 32-bit boundary
    return _EXT_HEADER.pack(profile, len(body) // 4) + bytes(body)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 §4: on a shared port, RTCP packet types are 192..223 in the second octet."""
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between two 16-bit sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """True if sequence number ``a`` comes after ``b`` (RFC 3550 A.1, modulo 2**16)."""
    return seq_diff(a, b) > 0


def ts_diff(a: int, b: int) -> int:
    """Signed distance a - b between two 32-bit RTP timestamps."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def ts_newer(a: int, b: int) -> bool:
    """True if RTP timestamp ``a`` is later than ``b`` (modulo 2**32)."""
    return ts_diff(a, b) > 0
