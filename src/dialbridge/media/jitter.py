"""Audio jitter buffer: one RTP stream (one SSRC) in, one 20 ms frame out per playout tick.

Theory of operation
-------------------
The buffer is sans-IO and time-driven. Packets go in with ``push(packet, now)`` whenever they
arrive; exactly one :class:`Frame` comes out of ``pop(now)`` on every 20 ms tick of the caller's
clock, whatever the network did. Playout is indexed by the *RTP timestamp* (RFC 3550 §5.1),
not by the sequence number, so Opus DTX (RFC 7587 §3.1.3: timestamps jump over the silence
while sequence numbers stay consecutive) and lost packets (a hole in the sequence numbers) can
be told apart:

* the frame for the playout timestamp is there          → ``AUDIO`` (decoded)
* it is missing and a later packet shows a sequence gap → ``PLC``: ``decoder.conceal(next)``,
  where *next* is the following packet's payload when it is already here, so Opus can use the
  in-band FEC it carries (RFC 6716 §2.1.7); at most ``max_plc_frames`` in a row
* it is missing and the sequence numbers are continuous → ``SILENCE`` (DTX or comfort noise)
* it is missing and nothing newer has arrived           → ``PLC`` for a few frames, then
  ``SILENCE`` (the sender went quiet or the network stalled)

Depth adapts. Every packet's *margin* (how many frames before its playout slot it arrived) is
recorded; once per adaptation window (50 pops = 1 s) the smallest margin is compared with the
target depth, which follows the RFC 3550 §6.4.1 / A.8 interarrival jitter estimate, clamped to
``[min_delay, max_delay]`` and sets the initial depth. A late packet (negative margin) →
as many concealment frames as it was late are inserted without advancing playout; two spare
frames above the target → one frame is dropped. Adjustments wait (up to 1 s) for a quiet
frame, where a time warp is not audible. The same mechanism absorbs clock skew between the
sender's sampling clock and our tick, so playout never drifts.

Three late packets in a row mean the whole stream is behind playout (a sender clock much
slower than ours, a step in network delay): playout is moved back at once instead.

A packet whose timestamp lies far from the playout point (the sender restarted its timestamp
base), or from another SSRC than the stream in play, restarts the buffer (a *resync*). Late,
duplicate and empty packets are counted and dropped; no input makes the buffer raise.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dialbridge.media.rtp import RtpPacket, seq_diff

__all__ = ["Frame", "FrameKind", "JitterBuffer", "JitterStats", "PlayoutDecoder"]

TICK = 0.020  # seconds per playout tick (one 20 ms frame)
ADAPT_WINDOW = 50  # pops per adaptation window (1 s)
# A timestamp more than this many frames away from the playout point is a new timeline.
RESYNC_FRAMES = 100
# This many late packets in a row mean playout is ahead of the stream: move it back at once.
LATE_RUN_REANCHOR = 3
MAX_ADJUST_WAIT = 50  # pops an adjustment may wait for a quiet frame
QUIET_PEAK = 600  # |sample| below this (about -35 dBFS peak) counts as a pause
SILENCE_LEVEL = 127  # RFC 6464: -127 dBov, "muted"


class PlayoutDecoder(Protocol):
    """What the buffer needs from a codec (``dialbridge.media.codecs.Decoder`` fits)."""

    def decode(self, payload: bytes) -> np.ndarray: ...

    def conceal(self, next_payload: bytes | None = None) -> np.ndarray: ...


class FrameKind(enum.Enum):
    AUDIO = "audio"
    PLC = "plc"
    SILENCE = "silence"


@dataclass(slots=True)
class Frame:
    """One 20 ms playout frame. ``pcm`` is None when the caller asked not to decode."""

    kind: FrameKind
    pcm: np.ndarray | None
    level: int = SILENCE_LEVEL  # RFC 6464 level that came with the packet (127 if none)


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    played: int = 0
    concealed: int = 0
    silent: int = 0
    late: int = 0
    duplicates: int = 0
    empty: int = 0
    dropped_for_depth: int = 0
    inserted_for_depth: int = 0
    resyncs: int = 0
    reanchors: int = 0
    jitter: float = 0.0  # RFC 3550 A.8 estimate, in RTP timestamp units


_UNDECODED = {kind: Frame(kind, None) for kind in FrameKind}  # shared, never mutated


class JitterBuffer:
    """Per-SSRC playout buffer; see the module docstring for the rules it keeps."""

    def __init__(
        self,
        decoder: PlayoutDecoder,
        *,
        clock_rate: int,
        frame_samples: int,
        pcm_samples: int = 160,
        min_delay: float = 0.060,
        max_delay: float = 0.300,
        max_plc_frames: int = 5,
    ) -> None:
        self.decoder = decoder
        self.clock_rate = clock_rate
        self.spf = frame_samples  # RTP timestamp units per 20 ms frame
        self._units_per_sample = max(1, frame_samples // pcm_samples)  # 6 for Opus at 8 kHz
        self.pcm_samples = pcm_samples
        self.min_frames = max(1, round(min_delay / TICK))
        self.max_frames = max(self.min_frames, round(max_delay / TICK))
        self.max_plc_frames = max_plc_frames
        self._resync_ahead = (RESYNC_FRAMES + self.max_frames + 1) * frame_samples
        self._resync_behind = -(RESYNC_FRAMES + 1) * frame_samples
        self.stats = JitterStats()
        self._silence = np.zeros(pcm_samples, dtype=np.int16)
        self.ssrc: int | None = None
        self.last_arrival: float | None = None
        self._reset_timeline()

    # -- state ---------------------------------------------------------------------------

    def _reset_timeline(self) -> None:
        # ext_ts -> (sequence number, payload, level)
        self._frames: dict[int, tuple[int, bytes, int]] = {}
        self._last_raw_ts: int | None = None
        self._last_ext_ts = 0
        self._playout: int | None = None  # ext ts of the frame the next pop plays
        self._first_arrival = 0.0
        self._last_played_seq: int | None = None
        self._plc_run = 0
        self._prev_transit: float | None = None
        self._window_pops = 0
        self._window_margin: float | None = None
        self._pending = 0  # +1 drop one frame, -1 insert one frame
        self._late_run = 0
        self._pending_age = 0
        self._last_frame: Frame | None = None
        # Audio decoded but not played yet (packets longer than 20 ms), and its RTP duration.
        self._carry_pcm: np.ndarray | None = None
        self._carry_units = 0
        self._carry_level = SILENCE_LEVEL

    @property
    def target_frames(self) -> int:
        """Depth the buffer aims for: 1 frame plus three jitter deviations, clamped."""
        extra = math.ceil(3.0 * self.stats.jitter / self.spf)
        return min(self.max_frames, max(self.min_frames, 1 + extra))

    @property
    def playing(self) -> bool:
        return self._playout is not None

    # -- input ---------------------------------------------------------------------------

    def push(self, packet: RtpPacket, now: float, level: int = SILENCE_LEVEL) -> bool:
        """Queue one packet; returns False if it was dropped (late, duplicate, empty)."""
        return self.push_payload(
            packet.ssrc, packet.sequence_number, packet.timestamp, packet.payload, now, level
        )

    def push_payload(
        self, ssrc: int, seq: int, ts: int, payload: bytes, now: float, level: int = SILENCE_LEVEL
    ) -> bool:
        """Same as :meth:`push` for callers that parsed the header themselves."""
        stats = self.stats
        if not payload:  # Jigasi's hole punch packets carry no payload (jigasi-protocol §1.5)
            stats.empty += 1
            return False
        if ssrc != self.ssrc:
            if self.ssrc is not None:
                stats.resyncs += 1
            self.ssrc = ssrc
            self._reset_timeline()
        last_raw = self._last_raw_ts
        if last_raw is None:
            ext = ts
        else:  # extend the 32-bit timestamp around the newest one seen (wrap-around)
            ext = self._last_ext_ts + (((ts - last_raw + 0x80000000) & 0xFFFFFFFF) - 0x80000000)
        playout = self._playout
        if playout is not None:
            ahead = ext - playout
            if ahead > self._resync_ahead or ahead < self._resync_behind:
                stats.resyncs += 1
                self._reset_timeline()
                ext = ts
                playout = last_raw = None
        self.last_arrival = now
        stats.received += 1
        # RFC 3550 §6.4.1 / A.8: J += (|D(i-1,i)| - J) / 16, in timestamp units.
        transit = now * self.clock_rate - ext
        prev = self._prev_transit
        if prev is not None:
            d = transit - prev
            stats.jitter += ((d if d >= 0 else -d) - stats.jitter) * 0.0625
        self._prev_transit = transit
        if last_raw is None or ext > self._last_ext_ts:
            self._last_raw_ts = ts
            self._last_ext_ts = ext

        if playout is None:
            if not self._frames:
                self._first_arrival = now
        else:
            ahead = ext - playout  # margin in RTP units (frames = ahead / spf, see _adapt)
            low = self._window_margin
            if low is None or ahead < low:
                self._window_margin = ahead
            if ahead < 0:
                stats.late += 1
                self._late_run += 1
                if self._late_run < LATE_RUN_REANCHOR:
                    return False
                # The stream as a whole is behind playout (a slow sender clock, a delay step):
                # move playout back so this packet plays after target-1 frames of margin.
                self._playout = ext - (self.target_frames - 1) * self.spf
                self._late_run = 0
                stats.reanchors += 1
            else:
                self._late_run = 0
        if ext in self._frames:
            stats.duplicates += 1
            return False
        self._frames[ext] = (seq, payload, level)
        return True

    # -- output --------------------------------------------------------------------------

    def peek_level(self, now: float) -> int:
        """RFC 6464 level of the frame ``pop(now)`` will play (127 if there is none)."""
        if self._playout is None and not self._start(now):
            return SILENCE_LEVEL
        entry = self._frames.get(self._playout)
        return SILENCE_LEVEL if entry is None else entry[2]

    def pop(self, now: float, decode: bool = True) -> Frame:
        """Produce the next 20 ms frame. With ``decode=False`` the playout state advances the
        same way but nothing is decoded (the mixer uses this for streams it leaves out)."""
        # Fast path, by far the most common tick: playing, nothing to adjust, no partial
        # packet carried over, and the 20 ms packet for this slot is here.
        ts = self._playout
        if (
            ts is not None
            and not self._pending
            and not self._carry_units
            and self._window_pops < ADAPT_WINDOW - 1
        ):
            frames = self._frames
            entry = frames.pop(ts, None)
            if entry is not None:
                spf = self.spf
                if not decode:
                    if not frames or min(frames) == ts + spf:  # the next packet is 20 ms on
                        self._window_pops += 1
                        self._playout = ts + spf
                        self._last_played_seq = entry[0]
                        self._plc_run = 0
                        self.stats.played += 1
                        self._last_frame = frame = _UNDECODED[FrameKind.AUDIO]
                        return frame
                else:
                    try:  # _decode, inlined
                        pcm = self.decoder.decode(entry[1])
                    except Exception:  # a corrupt payload is a remote error: conceal it
                        pcm = self._fit(self.decoder.conceal(None), spf)
                    if pcm.shape[0] == self.pcm_samples:
                        self._window_pops += 1
                        self._playout = ts + spf
                        self._last_played_seq = entry[0]
                        self._plc_run = 0
                        self.stats.played += 1
                        self._last_frame = frame = Frame(FrameKind.AUDIO, pcm, entry[2])
                        return frame
                    # Not a 20 ms packet: hand the decoded audio to the general path.
                    self._window_pops += 1
                    self._playout = ts + pcm.shape[0] * self._units_per_sample
                    self._last_played_seq = entry[0]
                    self._plc_run = 0
                    self.stats.played += 1
                    piece = (FrameKind.AUDIO, pcm, pcm.shape[0] * self._units_per_sample, entry[2])
                    return self._assemble([piece], decode)
                frames[ts] = entry  # odd duration without decoding: general path below

        if self._playout is None and not self._start(now):
            self.stats.silent += 1
            return Frame(FrameKind.SILENCE, self._silence if decode else None)

        self._window_pops += 1
        if self._window_pops >= ADAPT_WINDOW:
            self._adapt()

        if self._pending and not self._carry_units and self._adjust_now(decode):
            if self._pending < 0:  # insert: conceal once without advancing playout
                self._pending += 1
                self.stats.inserted_for_depth += 1
                kind, pcm, _, _ = self._conceal_or_silence(decode, None, self.spf)
                self._last_frame = frame = Frame(kind, pcm)
                return frame
            self._pending = 0  # drop: skip one packet of the timeline
            self.stats.dropped_for_depth += 1
            ts = self._playout
            dropped = self._frames.pop(ts, None)
            if dropped is not None:
                self._last_played_seq = dropped[0]
            self._playout = ts + self._units_after(ts)

        if not self._carry_units:
            kind, pcm, units, level = self._next_piece(decode)
            if units == self.spf:
                if pcm is None:  # not decoded (the mixer left this stream out)
                    self._last_frame = frame = _UNDECODED[kind]
                    return frame
                if pcm.shape[0] == self.pcm_samples:  # the common 20 ms packet
                    self._last_frame = frame = Frame(kind, pcm, level)
                    return frame
            pieces = [(kind, pcm, units, level)]
        else:
            pieces = [(FrameKind.AUDIO, self._carry_pcm, self._carry_units, self._carry_level)]
        return self._assemble(pieces, decode)

    def _assemble(self, pieces: list, decode: bool) -> Frame:
        """Packets that are not 20 ms long (ptime 10, 30, 40, 60 ...): cut the decoded audio
        into 20 ms frames, carrying what is left over to the next pop."""
        spf = self.spf
        have = sum(p[2] for p in pieces)
        while have < spf:
            piece = self._next_piece(decode)
            pieces.append(piece)
            have += piece[2]
        kinds = {p[0] for p in pieces}
        kind = (
            FrameKind.PLC
            if FrameKind.PLC in kinds
            else FrameKind.AUDIO
            if FrameKind.AUDIO in kinds
            else FrameKind.SILENCE
        )
        level = next((p[3] for p in pieces if p[0] is FrameKind.AUDIO), SILENCE_LEVEL)
        pcm = None
        if decode:
            per = self._units_per_sample
            parts = [p[1] if p[1] is not None else np.zeros(p[2] // per, np.int16) for p in pieces]
            whole = parts[0] if len(parts) == 1 else np.concatenate(parts)
            n = self.pcm_samples
            pcm, rest = whole[:n], whole[n:]
            self._carry_pcm = rest if rest.shape[0] else None
        else:
            self._carry_pcm = None
        self._carry_units = have - spf
        self._carry_level = level
        self._last_frame = frame = Frame(kind, pcm, level)
        return frame

    def _next_piece(self, decode: bool) -> tuple[FrameKind, np.ndarray | None, int, int]:
        """Consume the packet at the playout point, or conceal its absence: returns
        (kind, pcm or None, duration in RTP units, level) and advances playout."""
        ts = self._playout
        entry = self._frames.pop(ts, None)
        if entry is not None:
            seq, payload, level = entry
            self._last_played_seq = seq
            self._plc_run = 0
            self.stats.played += 1
            if decode:
                pcm = self._decode(payload)
                units = pcm.shape[0] * self._units_per_sample
            else:
                pcm, units = None, self._units_after(ts)
            self._playout = ts + units
            return FrameKind.AUDIO, pcm, units, level

        spf = self.spf
        frames = self._frames
        following = frames.get(ts + spf)
        units = spf
        if following is None and frames:
            lowest = min(frames)
            if lowest - ts < spf:  # the next packet starts inside this gap (odd ptime)
                units = lowest - ts
            following = frames[lowest]
            if lowest - ts != units and lowest - ts != spf:
                following_payload = None
            else:
                following_payload = following[1]
        else:
            following_payload = following[1] if following is not None else None
        self._playout = ts + units
        if following is not None:
            last = self._last_played_seq
            if last is not None and seq_diff(following[0], last) == 1:
                # Timestamps moved on but no sequence number is missing: DTX/CN gap.
                self._plc_run = 0
                self.stats.silent += 1
                pcm = self._silence_of(units) if decode else None
                return FrameKind.SILENCE, pcm, units, SILENCE_LEVEL
        return self._conceal_or_silence(decode, following_payload, units)

    def _units_after(self, ts: int) -> int:
        """Duration of the packet at ``ts`` without decoding it: up to the next one buffered."""
        spf = self.spf
        frames = self._frames
        if not frames:
            return spf
        # Up to the next buffered packet, whatever its distance: with 10 ms packets the one
        # 20 ms ahead is not the next one (looking there skipped every other packet).
        gap = min(frames) - ts
        return gap if 0 < gap <= 6 * spf else spf

    def _silence_of(self, units: int) -> np.ndarray:
        if units == self.spf:
            return self._silence
        # Overlapping timestamps from a confused sender can leave a negative gap: no samples.
        return np.zeros(max(0, units // self._units_per_sample), np.int16)

    def _remember(self, frame: Frame) -> Frame:
        self._last_frame = frame
        return frame

    def _adjust_now(self, decode: bool) -> bool:
        """Drop or insert only after a quiet frame (where a time warp is not heard), unless
        the adjustment has waited too long or the stream is not being listened to."""
        self._pending_age += 1
        if not decode or self._pending_age > MAX_ADJUST_WAIT:
            self._pending_age = 0
            return True
        last = self._last_frame
        if last is None or last.kind is not FrameKind.AUDIO or last.pcm is None:
            self._pending_age = 0
            return True
        if int(np.abs(last.pcm).max()) < QUIET_PEAK:
            self._pending_age = 0
            return True
        return False

    def _conceal_or_silence(
        self, decode: bool, next_payload: bytes | None, units: int
    ) -> tuple[FrameKind, np.ndarray | None, int, int]:
        if self._plc_run < self.max_plc_frames and self._last_played_seq is not None:
            self._plc_run += 1
            self.stats.concealed += 1
            pcm = None
            if decode:
                pcm = self._fit(self.decoder.conceal(next_payload), units)
            return FrameKind.PLC, pcm, units, SILENCE_LEVEL
        self.stats.silent += 1
        return FrameKind.SILENCE, self._silence_of(units) if decode else None, units, SILENCE_LEVEL

    def _decode(self, payload: bytes) -> np.ndarray:
        try:
            return self.decoder.decode(payload)
        except Exception:  # a corrupt payload is a remote error: conceal it, keep playing
            return self._fit(self.decoder.conceal(None), self.spf)

    def _fit(self, pcm: np.ndarray, units: int) -> np.ndarray:
        """Concealment audio cut or padded to ``units`` of RTP time."""
        n = units // self._units_per_sample
        if pcm.shape[0] == n:
            return pcm
        if pcm.shape[0] > n:
            return pcm[:n]
        return np.concatenate((pcm, np.zeros(n - pcm.shape[0], dtype=np.int16)))

    def _start(self, now: float) -> bool:
        if not self._frames:
            return False
        # Hold the first packet for target-1 ticks so the next ones have time to arrive.
        if now - self._first_arrival < (self.target_frames - 1) * TICK - 1e-6:
            return False
        self._playout = min(self._frames)
        self._window_pops = 0
        self._window_margin = None
        return True

    def _adapt(self) -> None:
        margin = self._window_margin
        self._window_pops = 0
        self._window_margin = None
        if margin is not None:
            margin /= self.spf  # frames
        if margin is None:  # nothing arrived in the window (DTX, silence): nothing to learn
            return
        target = self.target_frames
        # In steady state a packet arrives target-1 frames before its slot (see _start).
        # Grow only when a packet actually came too late (it was concealed), by as much as it
        # was late; shrink by one frame when even the latest packet had two frames to spare.
        if margin < 0:
            self._pending = -min(self.max_frames, math.ceil(-margin))
        elif margin >= target + 1:
            self._pending = 1
