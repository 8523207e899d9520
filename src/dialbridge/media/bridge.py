"""Connecting two legs: what one leg hears is what the other says, tick by tick.

Theory of operation
-------------------
A :class:`Bridge` joins two :class:`~dialbridge.media.session.MediaSession` cores. On every
20 ms tick it pulls one frame from each leg's receive side and hands it to the other leg's send
side, so each direction is decoded with the source leg's codec (its mixer keeps only the N
loudest SSRCs) and encoded once with the destination leg's codec. Transcoding PCMU/PCMA ↔
Opus therefore needs nothing special; a same-codec pair goes through the same path (decode +
encode of G.711 costs a few µs).

**Relay.** When both legs use the same codec and the source leg carries a single stream (its
``max_streams`` is 1), there is nothing to decode: packets are passed on as they arrive, with
our SSRC, our sequence numbers and the timestamps moved onto our timeline (B2BUA header
rewrite), RFC 4733 events included. The bridge falls back to decoding for as long as the
direction is muted or the destination plays a prompt, and the destination fills gaps with
comfort silence, so it never goes quiet.

Per direction (named by the *source* leg, "audio from A to B"):

* **mute**: the destination receives comfort silence instead (it keeps receiving packets:
  Jigasi must never see RTP stop, jigasi-protocol.md §1.6);
* **playback** is the destination leg's own :class:`~dialbridge.media.playback.Player`,
  applied in ``send_audio`` (replace or mix);
* **DTMF tone removal**: when the source leg runs the in-band detector, forwarded audio is
  delayed by ``tone_lookback`` frames, and every queued frame is blanked while the detector
  hears a tone, so the digits a caller types do not sound in the conference.

**C data plane.** When both legs run on the C data plane (dataplane.py: native playout on
the source, native encoder and meter on the destination, whose RTP socket the engine hands
to C), a direction with nothing special going on -- not relayed, no in-band detector, no
prompt playing and no RFC 4733 event being sent on the destination -- is ticked by
``_dataplane.tick_plain``: the same mix, mute, encode, RFC 6464 byte and send as below, in
C. The moment one of those conditions changes, the direction is back on the Python path,
on the same session state.

Sans-IO like the sessions: ``tick(now)`` only moves frames between cores (the native path
sends on the destination's socket itself).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from dialbridge.media.session import MediaSession

__all__ = ["Bridge", "can_relay", "tick_alone"]

TONE_LOOKBACK = 3  # frames (60 ms): the detector needs 40 ms of tone before it reports


def can_relay(source: MediaSession, sink: MediaSession) -> bool:
    """Whether packets from ``source`` may be relayed to ``sink`` without transcoding: same
    codec, one stream on the source (nothing to mix), no in-band DTMF to detect or blank,
    and RFC 6464 levels available if the sink must send them."""
    sp, kp = source.params, sink.params
    return (
        sp.codec.lower() == kp.codec.lower()
        and sp.max_streams == 1
        and not sp.runs_inband_dtmf
        and (kp.audio_level_id is None or sp.audio_level_id is not None)
    )


class _Direction:
    __slots__ = (
        "source",
        "sink",
        "muted",
        "delay",
        "lookback",
        "relay_capable",
        "native_tick",
        "_params",
        "_tone_lookback",
    )

    def __init__(self, source: MediaSession, sink: MediaSession, lookback: int) -> None:
        self.source = source
        self.sink = sink
        self.muted = False
        self._tone_lookback = lookback
        self.lookback = lookback if source._inband is not None else 0
        self.delay: deque[np.ndarray | None] = deque()
        self.relay_capable = can_relay(source, sink)
        self.native_tick = _native_tick(source, sink)
        self._params = (source.params, sink.params)

    def check_parameters(self) -> None:
        """A re-INVITE may have changed either leg's codec: decide relay/transcode again."""
        if self._params[0] is not self.source.params or self._params[1] is not self.sink.params:
            self._params = (self.source.params, self.sink.params)
            self.relay_capable = can_relay(self.source, self.sink)
            self.native_tick = _native_tick(self.source, self.sink)
            self.source.relay_to = None
            self.lookback = self._tone_lookback if self.source._inband is not None else 0

    def relaying(self) -> bool:
        """Relay now? Only while nothing needs the decoded audio (mute, a prompt)."""
        relay = self.relay_capable and not self.muted and not self.sink.player.active
        self.source.relay_to = self.sink if relay else None
        return relay

    def forward(self, now: float) -> np.ndarray | None:
        frame = self.source.pull_audio(now)
        pcm = frame.pcm if frame.active else None
        if self.lookback:
            delay = self.delay
            delay.append(pcm)
            if self.source.inband_tone_active:
                for i in range(len(delay)):
                    delay[i] = None
            pcm = delay.popleft() if len(delay) > self.lookback else None
        return None if self.muted else pcm


class Bridge:
    """Two legs connected in both directions."""

    def __init__(self, a: MediaSession, b: MediaSession, *, tone_lookback: int = TONE_LOOKBACK):
        if a is b:
            raise ValueError("a leg cannot be bridged to itself")
        self.a = a
        self.b = b
        self._a_to_b = _Direction(a, b, tone_lookback)
        self._b_to_a = _Direction(b, a, tone_lookback)
        self._directions = (self._a_to_b, self._b_to_a)
        for direction in self._directions:  # relay from the first packet, not the first tick
            if direction.relay_capable:
                direction.relaying()

    @property
    def sessions(self) -> tuple[MediaSession, MediaSession]:
        return self.a, self.b

    def other(self, session: MediaSession) -> MediaSession:
        return self.b if session is self.a else self.a

    def mute(self, source: MediaSession, muted: bool = True) -> None:
        """Stop (or resume) forwarding audio *from* ``source`` to the other leg."""
        if source is self.a:
            direction = self._a_to_b
        elif source is self.b:
            direction = self._b_to_a
        else:
            raise ValueError(f"session {source.session_id} is not in this bridge")
        direction.muted = muted
        if direction.relay_capable:
            direction.relaying()  # stop (or resume) relaying at once, not at the next tick

    def is_muted(self, source: MediaSession) -> bool:
        return (self._a_to_b if source is self.a else self._b_to_a).muted

    def tick(self, now: float) -> None:
        for direction in self._directions:
            source, sink = direction.source, direction.sink
            params = direction._params
            if params[0] is not source.params or params[1] is not sink.params:
                direction.check_parameters()
            if direction.relay_capable and direction.relaying():
                sink.relay_tick(now)
            elif direction.lookback or source._inband is not None:
                sink.send_audio(direction.forward(now), now)
            elif (
                direction.native_tick is not None
                and sink.rtp_fd is not None
                and not sink.player._queue
                and (sink._dtmf_tx is None or not sink._dtmf_tx.busy)
            ):  # the common transcoding direction, in C (see the module docstring)
                direction.native_tick(source, sink, sink.rtp_fd, direction.muted, now)
            else:  # the common transcoding direction, forward() inlined
                frame = source.mixer.mix(now)  # pull_audio without a detector
                sink.send_audio(frame.pcm if frame.active and not direction.muted else None, now)

    def close(self) -> None:
        """Stop relaying (the legs go on alone)."""
        self.a.relay_to = None
        self.b.relay_to = None


def _native_tick(source: MediaSession, sink: MediaSession):
    """``_dataplane.tick_plain`` when this direction can run in C at all (both ends on the
    data plane), else None. Per-tick conditions (prompt, DTMF sending) are checked by tick()."""
    native = source._native
    if (
        native is None
        or sink._native is not native
        or source.native_codec is None
        or sink.native_codec is None
        or source._inband is not None
        or not isinstance(sink.meter, native.AudioLevelMeter)
    ):
        return None
    return native.tick_plain


def tick_alone(session: MediaSession, now: float) -> None:
    """Tick of a leg that is not bridged: keep its playout and DTMF detection running and send
    its prompts, or comfort silence."""
    session.pull_audio(now)
    session.send_audio(None, now)
