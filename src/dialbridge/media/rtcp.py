"""RTCP (RFC 3550 §6): SR, RR, SDES, BYE, compound packets, and receiver/sender statistics.

Theory of operation
-------------------
Two halves, both sans-IO:

* Wire format. :func:`parse_rtcp` turns one datagram (a compound packet, §6.1) into a list
  of small packet values; :func:`serialize_rtcp` does the reverse. Packet types we do not use
  (APP, RTPFB/PSFB feedback, XR) come back as :class:`RtcpUnknown` so a relay can forward them.
  Malformed input raises :class:`RtcpParseError` (remote error: drop and log).
* Statistics. :class:`RtpReceiverStats` is one per received SSRC and implements RFC 3550
  Appendix A.1 (sequence validation with probation and restart detection), A.3 (expected and
  lost packets, fraction lost per interval) and A.8 (interarrival jitter). It builds the
  :class:`ReportBlock` we send about that SSRC. :class:`RtpSenderStats` is one per SSRC we
  send: packet/octet counts for our SR, and round-trip time from the peer's report blocks
  (§6.4.1: RTT = A - LSR - DLSR). These feed the call-quality records.

Clocks: every ``now`` is in seconds. ``arrival`` for jitter may be any monotonic clock. The
NTP timestamps in SRs, and the ``now`` given to :meth:`RtpSenderStats.round_trip_time`, must be
the same wall clock (Unix seconds), since the peer echoes the middle 32 bits of our NTP time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpBuildError",
    "RtcpPacket",
    "RtcpParseError",
    "RtcpUnknown",
    "RtpReceiverStats",
    "RtpSenderStats",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "compact_ntp",
    "ntp_from_unix",
    "parse_rtcp",
    "serialize_rtcp",
]

# §12.1 packet types
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
# §6.5 SDES item types
SDES_END = 0
SDES_CNAME = 1

NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01

_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IIIIII")
_SR_INFO = struct.Struct("!IQIII")


class RtcpParseError(ValueError):
    """The peer sent an RTCP packet we cannot parse (remote error)."""


class RtcpBuildError(ValueError):
    """We asked for an RTCP packet that cannot be encoded (local error)."""


def ntp_from_unix(unix_seconds: float) -> int:
    """64-bit NTP timestamp (§4) for a Unix time."""
    seconds = unix_seconds + NTP_UNIX_OFFSET
    whole = int(seconds)
    return ((whole & 0xFFFFFFFF) << 32) | int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF


def compact_ntp(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (§6.4.1 LSR), in 1/65536 s."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """§6.4.1 reception report block about one source."""

    ssrc: int
    fraction_lost: int  # lost fraction since the last report, as n/256
    cumulative_lost: int  # signed 24-bit (duplicates can make it negative)
    highest_sequence: int  # extended highest sequence number received (cycles << 16 | seq)
    jitter: int  # interarrival jitter in RTP timestamp units
    last_sr: int = 0  # LSR: compact NTP of the last SR from that source, 0 if none
    delay_since_last_sr: int = 0  # DLSR in 1/65536 s

    def serialize(self) -> bytes:
        if not 0 <= self.fraction_lost <= 255:
            raise RtcpBuildError("fraction_lost is 8 bits")
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost << 24) | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.last_sr & 0xFFFFFFFF,
            self.delay_since_last_sr & 0xFFFFFFFF,
        )

    @classmethod
    def parse(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """§6.4.1 SR."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """§6.4.2 RR."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """§6.5: one source's items, as (item type, value) pairs."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """§6.5 SDES."""

    chunks: tuple[SdesChunk, ...] = ()

    @classmethod
    def with_cname(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls((SdesChunk(ssrc, ((SDES_CNAME, cname.encode()),)),))


@dataclass(frozen=True, slots=True)
class Bye:
    """§6.6 BYE."""

    sources: tuple[int, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    """Any other RTCP packet (APP, feedback, XR), kept verbatim: ``count`` is the 5-bit field."""

    packet_type: int
    count: int
    body: bytes


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown


# -- parsing ----------------------------------------------------------------------------------


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram (§6.1). Raises :class:`RtcpParseError` if malformed."""
    packets: list[RtcpPacket] = []
    pos = 0
    size = len(data)
    if size < 4:
        raise RtcpParseError("RTCP packet too short")
    while pos < size:
        if pos + 4 > size:
            raise RtcpParseError("trailing bytes after the last RTCP packet")
        b0, pt, length = _HEADER.unpack_from(data, pos)
        if b0 >> 6 != 2:
            raise RtcpParseError(f"RTCP version {b0 >> 6} is not 2")
        end = pos + 4 * (length + 1)
        if end > size:
            raise RtcpParseError("RTCP length field runs past the datagram")
        body_end = end
        if b0 & 0x20:  # padding: only legal on the last packet of a compound (§6.4.1)
            pad = data[end - 1]
            if pad == 0 or pad > end - pos - 4:
                raise RtcpParseError("bad RTCP padding")
            body_end -= pad
        count = b0 & 0x1F
        packets.append(_parse_one(pt, count, data, pos + 4, body_end))
        pos = end
    return packets


def _parse_report_blocks(data: bytes, pos: int, end: int, count: int) -> tuple[ReportBlock, ...]:
    if pos + 24 * count > end:
        raise RtcpParseError("report blocks run past the packet")
    return tuple(ReportBlock.parse(data, pos + 24 * i) for i in range(count))


def _parse_one(pt: int, count: int, data: bytes, pos: int, end: int) -> RtcpPacket:
    if pt == RTCP_SR:
        if pos + 24 > end:
            raise RtcpParseError("SR too short")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(data, pos)
        return SenderReport(
            ssrc, ntp, rtp_ts, packets, octets, _parse_report_blocks(data, pos + 24, end, count)
        )
    if pt == RTCP_RR:
        if pos + 4 > end:
            raise RtcpParseError("RR too short")
        (ssrc,) = struct.unpack_from("!I", data, pos)
        return ReceiverReport(ssrc, _parse_report_blocks(data, pos + 4, end, count))
    if pt == RTCP_SDES:
        return SourceDescription(_parse_sdes_chunks(data, pos, end, count))
    if pt == RTCP_BYE:
        if pos + 4 * count > end:
            raise RtcpParseError("BYE source list runs past the packet")
        sources = struct.unpack_from(f"!{count}I", data, pos)
        pos += 4 * count
        reason = ""
        if pos < end:
            n = data[pos]
            if pos + 1 + n > end:
                raise RtcpParseError("BYE reason runs past the packet")
            reason = data[pos + 1 : pos + 1 + n].decode("utf-8", "replace")
        return Bye(tuple(sources), reason)
    return RtcpUnknown(pt, count, bytes(data[pos:end]))


def _parse_sdes_chunks(data: bytes, pos: int, end: int, count: int) -> tuple[SdesChunk, ...]:
    chunks = []
    for _ in range(count):
        if pos + 4 > end:
            raise RtcpParseError("SDES chunk runs past the packet")
        (ssrc,) = struct.unpack_from("!I", data, pos)
        pos += 4
        items = []
        while True:
            if pos >= end:
                raise RtcpParseError("SDES chunk is not terminated")
            kind = data[pos]
            if kind == SDES_END:
                pos += 1
                pos += -pos % 4  # the null item is followed by padding to a 32-bit boundary
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtcpParseError("SDES item runs past the packet")
            n = data[pos + 1]
            items.append((kind, bytes(data[pos + 2 : pos + 2 + n])))
            pos += 2 + n
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return tuple(chunks)


# -- building ---------------------------------------------------------------------------------


def _packet(pt: int, count: int, body: bytes, pad: bool = False) -> bytes:
    if count > 31:
        raise RtcpBuildError("at most 31 report blocks / chunks / sources per packet")
    flags = 0x80
    if len(body) % 4:
        if not pad:
            raise RtcpBuildError("RTCP body must be a multiple of 32 bits")
        # §6.4.1 P bit: pad to 32 bits, the last octet counts the padding
        n = 4 - len(body) % 4
        body += bytes(n - 1) + bytes((n,))
        flags |= 0x20
    return _HEADER.pack(flags | count, pt, len(body) // 4) + body


def serialize_rtcp(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """Build a compound RTCP datagram. §6.1: start it with an SR or RR (caller's job)."""
    out = []
    for p in packets:
        if isinstance(p, SenderReport):
            body = _SR_INFO.pack(
                p.ssrc,
                p.ntp_timestamp & 0xFFFFFFFFFFFFFFFF,
                p.rtp_timestamp & 0xFFFFFFFF,
                p.packet_count & 0xFFFFFFFF,
                p.octet_count & 0xFFFFFFFF,
            )
            body += b"".join(r.serialize() for r in p.reports)
            out.append(_packet(RTCP_SR, len(p.reports), body))
        elif isinstance(p, ReceiverReport):
            body = struct.pack("!I", p.ssrc) + b"".join(r.serialize() for r in p.reports)
            out.append(_packet(RTCP_RR, len(p.reports), body))
        elif isinstance(p, SourceDescription):
            body = bytearray()
            for chunk in p.chunks:
                body += struct.pack("!I", chunk.ssrc)
                for kind, value in chunk.items:
                    if not 1 <= kind <= 255 or len(value) > 255:
                        raise RtcpBuildError("SDES item type 1..255, value up to 255 bytes")
                    body += bytes((kind, len(value))) + value
                body += b"\x00"
                body += bytes(-len(body) % 4)
            out.append(_packet(RTCP_SDES, len(p.chunks), bytes(body)))
        elif isinstance(p, Bye):
            body = struct.pack(f"!{len(p.sources)}I", *p.sources)
            if p.reason:
                reason = p.reason.encode()[:255]
                body += bytes((len(reason),)) + reason
                body += bytes(-len(body) % 4)
            out.append(_packet(RTCP_BYE, len(p.sources), body))
        elif isinstance(p, RtcpUnknown):
            # a body that arrived padded comes back unpadded: pad it again
            out.append(_packet(p.packet_type, p.count, p.body, pad=True))
        else:
            raise RtcpBuildError(f"not an RTCP packet: {p!r}")
    return b"".join(out)


# -- statistics -------------------------------------------------------------------------------

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000  # A.1
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


@dataclass(slots=True)
class RtpReceiverStats:
    """Reception statistics for one remote SSRC (RFC 3550 A.1, A.3, A.8).

    Feed every RTP packet with :meth:`on_rtp` (``arrival`` in seconds, any monotonic clock)
    and every SR from that source with :meth:`on_sender_report`. :meth:`report_block` builds
    the block for our next SR/RR and starts a new interval for ``fraction_lost``.
    """

    ssrc: int
    clock_rate: int
    probation: int = MIN_SEQUENTIAL
    max_seq: int = 0
    cycles: int = 0
    base_seq: int = 0
    bad_seq: int = RTP_SEQ_MOD + 1
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0  # in RTP timestamp units, A.8
    _transit: float | None = None
    _last_sr: int = 0
    _last_sr_arrival: float | None = None
    _started: bool = False
    restarts: int = 0
    last_fraction_lost: int = field(default=0)

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def on_rtp(self, seq: int, timestamp: int, arrival: float) -> bool:
        """Account for one packet. Returns False while the source is on probation or when the
        packet is a wild jump (A.1): such packets should not be played out."""
        if not self._started:
            self._started = True
            self._init_seq(seq)
            self.max_seq = (seq - 1) & 0xFFFF
            if self.probation == 0:  # probation disabled: count the first packet at once
                self._init_seq(seq)
                self.received = 1
                self._update_jitter(timestamp, arrival)
                return True
        if not self._update_seq(seq):
            return False
        self._update_jitter(timestamp, arrival)
        return True

    def _update_seq(self, seq: int) -> bool:
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:  # in order, with permissible gap; wrapped around
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                # Two sequential packets after a big jump: the source restarted (A.1).
                self._init_seq(seq)
                self._transit = None
                self.restarts += 1
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet, counted but max_seq unchanged
        self.received += 1
        return True

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        # A.8: D(i-1,i) = (Rj - Ri) - (Sj - Si), in timestamp units; J += (|D| - J) / 16
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = transit - self._transit
            # A 32-bit timestamp wrap shows up as a ~2**32 jump in transit: fold it back.
            if d > 2**31:
                d -= 2**32
            elif d < -(2**31):
                d += 2**32
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._transit = transit

    def on_sender_report(self, sr: SenderReport, arrival: float) -> None:
        self._last_sr = compact_ntp(sr.ntp_timestamp)
        self._last_sr_arrival = arrival

    @property
    def extended_max_seq(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max_seq - self.base_seq + 1 if self.received else 0

    @property
    def cumulative_lost(self) -> int:
        return self.expected - self.received

    @property
    def jitter_seconds(self) -> float:
        return self.jitter / self.clock_rate

    def report_block(self, now: float) -> ReportBlock:
        """The §6.4.1 block about this source; ``now`` on the same clock as ``arrival``."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        self.last_fraction_lost = fraction
        dlsr = 0
        if self._last_sr_arrival is not None:
            dlsr = int((now - self._last_sr_arrival) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            cumulative_lost=self.cumulative_lost,
            highest_sequence=self.extended_max_seq & 0xFFFFFFFF,
            jitter=int(self.jitter),
            last_sr=self._last_sr,
            delay_since_last_sr=dlsr,
        )


@dataclass(slots=True)
class RtpSenderStats:
    """What we sent on one SSRC (for our SR) and what the peer reports about it."""

    ssrc: int
    clock_rate: int
    packet_count: int = 0
    octet_count: int = 0
    last_rtp_timestamp: int = 0
    last_send_time: float | None = None
    rtt: float | None = None  # seconds, from the latest report block with an LSR
    remote_fraction_lost: int = 0
    remote_cumulative_lost: int = 0
    remote_jitter: int = 0

    def on_rtp_sent(self, payload_size: int, timestamp: int, now: float) -> None:
        """Count one sent packet (§6.4.1: octet count is payload octets only)."""
        self.packet_count = (self.packet_count + 1) & 0xFFFFFFFF
        self.octet_count = (self.octet_count + payload_size) & 0xFFFFFFFF
        self.last_rtp_timestamp = timestamp
        self.last_send_time = now

    def sender_report(
        self, wallclock: float, reports: tuple[ReportBlock, ...] = (), now: float | None = None
    ) -> SenderReport:
        """Our SR. The RTP timestamp is extrapolated from the last packet to ``now`` (same
        clock as :meth:`on_rtp_sent`); ``wallclock`` (Unix seconds) gives the NTP time."""
        rtp_ts = self.last_rtp_timestamp
        if now is not None and self.last_send_time is not None:
            rtp_ts += int((now - self.last_send_time) * self.clock_rate)
        return SenderReport(
            self.ssrc,
            ntp_from_unix(wallclock),
            rtp_ts & 0xFFFFFFFF,
            self.packet_count,
            self.octet_count,
            reports,
        )

    def on_report_block(self, block: ReportBlock, wallclock: float) -> float | None:
        """Take the peer's block about us; returns the RTT in seconds when it can be computed
        (§6.4.1: A - LSR - DLSR, all in 1/65536 s of the NTP clock of our SRs)."""
        self.remote_fraction_lost = block.fraction_lost
        self.remote_cumulative_lost = block.cumulative_lost
        self.remote_jitter = block.jitter
        if block.last_sr == 0:
            return None
        arrival = compact_ntp(ntp_from_unix(wallclock))
        rtt_units = (arrival - block.last_sr - block.delay_since_last_sr) & 0xFFFFFFFF
        if rtt_units > 0x80000000:  # negative: clocks disagree, ignore
            return None
        self.rtt = rtt_units / 65536.0
        return self.rtt
