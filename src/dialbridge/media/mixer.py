"""Mixing the SSRCs of one RTP session into one 20 ms frame, loudest first.

Theory of operation
-------------------
In translator mode Jigasi forwards one RTP stream per web participant on our single RTP
session (jigasi-protocol.md §5.3); in mixer mode it sends one stream (§5.2). Both go through
this class: one :class:`~dialbridge.media.jitter.JitterBuffer` (and one decoder: codec state is
per stream) per SSRC, demultiplexed on the SSRC field (RFC 3550 §8.2 allows many in a session).

Choosing before decoding: each packet carries the sender's RFC 6464 ``ssrc-audio-level``
(0 = loudest, 127 = silence). On every tick the streams are ranked by the level of the frame
each is about to play, and only the ``max_streams`` loudest non-silent ones are decoded; the
others advance their playout without decoding (their decoder simply sees a gap when they are
picked again, which libopus handles as a stream discontinuity). Frames quieter than
``quiet_level`` (default 70, i.e. below -70 dBov: a muted browser, a pause under noise
suppression) are not decoded, after a 0.5 s hangover that keeps a talker's pauses intact, so a conference where one person talks costs one decode
per tick whatever the number of participants. A stream that was picked on
the previous tick keeps its rank while it conceals a lost packet, so PLC runs on it (and loses
it once its jitter buffer gives up concealing and goes silent). Streams
that send no level are ranked as loud: without a level there is no way to skip them cheaply.

Mixing is an int32 sum. When the sum leaves the int16 range a soft knee (tanh above 80 % of
full scale) is applied, then a hard clip; audio that fits passes unchanged.

Streams silent for ``stream_timeout`` seconds are forgotten (an RTCP BYE may also remove one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dialbridge.media.jitter import SILENCE_LEVEL, FrameKind, JitterBuffer, PlayoutDecoder
from dialbridge.media.rtp import RtpPacket

__all__ = ["MixedFrame", "Mixer", "mix_pcm"]

FULL_SCALE = 32767
KNEE = int(0.8 * FULL_SCALE)
UNKNOWN_LEVEL = 0  # no RFC 6464 extension: rank as loud, so the stream is heard
HOUSEKEEPING_TICKS = 50
HANGOVER_TICKS = 25  # keep decoding a talker through 0.5 s of quiet (pauses between words)
_SILENCE_KIND = FrameKind.SILENCE
_AUDIO_KIND = FrameKind.AUDIO


@dataclass(slots=True)
class MixedFrame:
    pcm: np.ndarray
    sources: tuple[int, ...]  # SSRCs whose audio (or concealment) is in ``pcm``
    active: bool  # False when every stream was silent, absent or muted


def mix_pcm(frames: list[np.ndarray]) -> np.ndarray:
    """Sum int16 frames in int32 with clipping protection (soft knee, then hard clip)."""
    if len(frames) == 1:
        return frames[0]
    acc = frames[0].astype(np.int32)
    for f in frames[1:]:
        acc += f
    peak = max(int(acc.max()), -int(acc.min()))
    if peak <= FULL_SCALE:
        return acc.astype(np.int16)
    x = acc.astype(np.float32)
    mag = np.abs(x)
    over = mag > KNEE
    span = FULL_SCALE - KNEE
    mag[over] = KNEE + span * np.tanh((mag[over] - KNEE) / span)
    return np.clip(np.copysign(mag, x), -FULL_SCALE, FULL_SCALE).astype(np.int16)


class Mixer:
    """Per-SSRC playout plus N-loudest selection for one receiving RTP session."""

    def __init__(
        self,
        decoder_factory: Callable[[], PlayoutDecoder],
        *,
        clock_rate: int,
        frame_samples: int,
        pcm_samples: int = 160,
        max_streams: int = 3,
        quiet_level: int = 70,
        stream_timeout: float = 5.0,
        min_delay: float = 0.060,
        max_delay: float = 0.300,
    ) -> None:
        self.decoder_factory = decoder_factory
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.pcm_samples = pcm_samples
        self.max_streams = max_streams
        self.quiet_level = quiet_level
        self.stream_timeout = stream_timeout
        self._jb_opts = {"min_delay": min_delay, "max_delay": max_delay}
        self.streams: dict[int, JitterBuffer] = {}
        self._picked: list[int] = []
        self._last_level: dict[int, int] = {}
        self._loud_at: dict[int, int] = {}  # tick at which each stream was last above quiet
        self._ticks = 0
        self._silence = np.zeros(pcm_samples, dtype=np.int16)
        self.decoded_frames = 0
        self.skipped_frames = 0

    def push(self, packet: RtpPacket, now: float, level: int | None = None) -> bool:
        return self.push_payload(
            packet.ssrc, packet.sequence_number, packet.timestamp, packet.payload, now, level
        )

    def push_payload(
        self, ssrc: int, seq: int, ts: int, payload: bytes, now: float, level: int | None
    ) -> bool:
        jb = self.streams.get(ssrc)
        if jb is None:
            if not payload:  # a hole punch must not create a stream
                return False
            jb = self.streams[ssrc] = JitterBuffer(
                self.decoder_factory(),
                clock_rate=self.clock_rate,
                frame_samples=self.frame_samples,
                pcm_samples=self.pcm_samples,
                **self._jb_opts,
            )
        return jb.push_payload(
            ssrc, seq, ts, payload, now, UNKNOWN_LEVEL if level is None else level
        )

    def remove(self, ssrc: int) -> None:
        """Forget a stream (RTCP BYE, RFC 3550 §6.6)."""
        self.streams.pop(ssrc, None)
        if ssrc in self._picked:
            self._picked.remove(ssrc)
        self._last_level.pop(ssrc, None)
        self._loud_at.pop(ssrc, None)

    def mix(self, now: float) -> MixedFrame:
        """Play one tick of every stream and return the mix of the loudest ones."""
        tick = self._ticks = self._ticks + 1
        if tick % HOUSEKEEPING_TICKS == 0:
            self._expire(now)
        streams = self.streams
        if not streams:
            return MixedFrame(self._silence, (), False)

        ranked: list[tuple[int, int]] = []
        quiet_level = self.quiet_level
        loud_at = self._loud_at
        last_picked = self._picked
        for ssrc, jb in streams.items():
            # JitterBuffer.peek_level, inlined: the level of the frame pop() will play.
            playout = jb._playout
            if playout is None:
                if not jb._start(now):
                    continue  # nothing to play yet: SILENCE_LEVEL, never ranked
                playout = jb._playout
            entry = jb._frames.get(playout)
            level = SILENCE_LEVEL if entry is None else entry[2]
            if level == SILENCE_LEVEL:
                if ssrc not in last_picked:
                    continue
                level = self._last_level.get(ssrc, SILENCE_LEVEL)  # conceal a loss on it
            if level <= quiet_level:
                loud_at[ssrc] = tick
                ranked.append((level, ssrc))
            elif (
                level < SILENCE_LEVEL and tick - loud_at.get(ssrc, -HANGOVER_TICKS) < HANGOVER_TICKS
            ):
                ranked.append((level, ssrc))  # a pause inside speech: keep decoding it
        if len(ranked) > self.max_streams:
            ranked.sort()
            del ranked[self.max_streams :]
        picked = [ssrc for _, ssrc in ranked]

        frames: list[np.ndarray] = []
        sources: list[int] = []
        for ssrc, jb in streams.items():
            if ssrc in picked:
                frame = jb.pop(now, True)
                kind = frame.kind
                if kind is not _SILENCE_KIND:
                    frames.append(frame.pcm)
                    sources.append(ssrc)
                    if kind is _AUDIO_KIND:
                        self._last_level[ssrc] = frame.level
            else:
                jb.pop(now, False)
        self.decoded_frames += len(frames)
        self.skipped_frames += len(streams) - len(picked)
        # Keep the rank next tick only for streams that played something (audio or a
        # concealed loss): one that went silent must not hold a place until it times out.
        self._picked = sources
        if not frames:
            return MixedFrame(self._silence, (), False)
        return MixedFrame(mix_pcm(frames), tuple(sources), True)

    def _expire(self, now: float) -> None:
        for ssrc, jb in list(self.streams.items()):
            if jb.last_arrival is not None and now - jb.last_arrival > self.stream_timeout:
                self.remove(ssrc)


class SingleStreamPlayout:
    """The :class:`Mixer` interface for a leg that carries one stream (a trunk, a phone):
    one jitter buffer, no ranking. A new SSRC replaces the old one (the buffer resyncs), as
    when a trunk re-originates the stream after a re-INVITE."""

    def __init__(
        self,
        decoder_factory: Callable[[], PlayoutDecoder],
        *,
        clock_rate: int,
        frame_samples: int,
        pcm_samples: int = 160,
        min_delay: float = 0.060,
        max_delay: float = 0.300,
    ) -> None:
        self.jitter = JitterBuffer(
            decoder_factory(),
            clock_rate=clock_rate,
            frame_samples=frame_samples,
            pcm_samples=pcm_samples,
            min_delay=min_delay,
            max_delay=max_delay,
        )
        self._silence = np.zeros(pcm_samples, dtype=np.int16)
        self.decoded_frames = 0
        self.skipped_frames = 0

    @property
    def streams(self) -> dict[int, JitterBuffer]:
        jb = self.jitter
        return {} if jb.ssrc is None else {jb.ssrc: jb}

    def push(self, packet: RtpPacket, now: float, level: int | None = None) -> bool:
        return self.jitter.push(packet, now, UNKNOWN_LEVEL if level is None else level)

    def push_payload(
        self, ssrc: int, seq: int, ts: int, payload: bytes, now: float, level: int | None
    ) -> bool:
        return self.jitter.push_payload(
            ssrc, seq, ts, payload, now, UNKNOWN_LEVEL if level is None else level
        )

    def remove(self, ssrc: int) -> None:
        if self.jitter.ssrc == ssrc:
            self.jitter.ssrc = None
            self.jitter._reset_timeline()

    def mix(self, now: float) -> MixedFrame:
        frame = self.jitter.pop(now, True)
        if frame.kind is FrameKind.SILENCE:
            return MixedFrame(self._silence, (), False)
        self.decoded_frames += 1
        return MixedFrame(frame.pcm, (self.jitter.ssrc,), True)
