"""DTMF three ways: RFC 4733 telephone-events, in-band tones (ITU-T Q.23/Q.24), SIP INFO bodies.

Theory of operation
-------------------
Every path ends in the same small event: :class:`DigitEvent`, once per key press, when it
ends, with its duration. With ``report_start=True`` the receivers also emit
:class:`DigitStarted` as soon as a digit is known (to stop a prompt early, say). All classes here are sans-IO: they are fed payloads, frames and ``now`` and hand back
events and, for the sender, payloads to put on the wire.

* RFC 4733 (§2.3 payload format): :class:`TelephoneEvent` is the 4-byte payload.
  :class:`Rfc4733Receiver` de-duplicates by RTP timestamp (all packets of one event share it,
  §2.5.1.2; the end packet is sent three times, §2.5.1.4), ends an event whose end packets were
  all lost after ``end_timeout`` without packets (its timer is ``get_timer()``), and joins the
  segments of a long event (§2.5.1.3). :class:`Rfc4733Sender` produces the packets for a digit
  on the 20 ms media tick: marker on the first, growing duration, three end packets.
* In-band: :class:`InbandDtmfDetector` runs on 20 ms frames at 8 kHz, see its docstring.
* SIP INFO: :func:`parse_dtmf_relay` (``application/dtmf-relay``) and
  :func:`parse_application_dtmf` (``application/dtmf``).

Malformed input raises :class:`DtmfParseError` (a remote error; a ``ValueError``).
"""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass

import numpy as np

from .rtp import RtpPacket, ts_diff

__all__ = [
    "DBM0_SINE_AMPLITUDE",
    "DTMF_DIGITS",
    "DigitEvent",
    "DigitStarted",
    "DtmfFrameResult",
    "DtmfParseError",
    "InbandDtmfDetector",
    "Rfc4733Receiver",
    "Rfc4733Sender",
    "TelephoneEvent",
    "TelephoneEventPacket",
    "build_dtmf_relay",
    "digit_to_event",
    "dtmf_tone",
    "event_to_digit",
    "parse_application_dtmf",
    "parse_dtmf_relay",
]

# RFC 4733 §3.2 Table 3: event codes 0-9, *, #, A-D; 16 is hook flash.
DTMF_DIGITS = "0123456789*#ABCD"
FLASH_EVENT = 16


class DtmfParseError(ValueError):
    """A peer sent a malformed DTMF payload or INFO body (remote error)."""


def digit_to_event(digit: str) -> int:
    code = DTMF_DIGITS.find(digit.upper())
    if len(digit) != 1 or code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


def event_to_digit(code: int) -> str | None:
    """The digit for an RFC 4733 event code, or None for non-DTMF events (flash, tones)."""
    return DTMF_DIGITS[code] if 0 <= code < 16 else None


@dataclass(frozen=True, slots=True)
class DigitStarted:
    """A digit began (RFC 4733 first packet, or an in-band tone was confirmed)."""

    digit: str
    source: str  # "rfc4733" | "inband"


@dataclass(frozen=True, slots=True)
class DigitEvent:
    """One key press, emitted once when it ended. ``duration_ms`` as measured or signalled."""

    digit: str
    duration_ms: int
    source: str  # "rfc4733" | "inband" | "info"
    ended_by: str = "end"  # "end" (E bit / tone stopped), "timeout", "next" (next event began)

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.duration_ms / 1000.0


# -- RFC 4733 payload -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """RFC 4733 §2.3 payload: event, E (end), R (reserved), volume (0..63, -dBm0), duration."""

    event: int
    end: bool
    volume: int
    duration: int  # in RTP timestamp units, from the event's timestamp

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise DtmfParseError(f"telephone-event payload of {len(payload)} bytes (need 4)")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= 63:
            raise ValueError("event 0..255 and volume 0..63")
        if not 0 <= self.duration <= 0xFFFF:
            raise ValueError("duration is 16 bits")
        return struct.pack(
            "!BBH", self.event, (0x80 if self.end else 0) | self.volume, self.duration
        )

    @property
    def digit(self) -> str | None:
        return event_to_digit(self.event)


@dataclass(slots=True)
class _ReceivingEvent:
    timestamp: int
    event: int
    duration: int  # highest duration seen in the current segment
    earlier_segments: int  # units of previous segments of a long event (§2.5.1.3)
    last_seen: float


class Rfc4733Receiver:
    """Turns received telephone-event packets of one stream into digit events.

    ``receive(packet, now)`` -> list of events; ``get_timer()`` is the time at which
    ``handle_timer(now)`` must be called if no packet comes (an event whose end packets were
    all lost). :class:`DigitStarted` is reported only with ``report_start=True``.
    """

    def __init__(
        self, clock_rate: int = 8000, end_timeout: float = 0.3, report_start: bool = False
    ) -> None:
        self.clock_rate = clock_rate
        self.end_timeout = end_timeout
        self.report_start = report_start
        self._current: _ReceivingEvent | None = None
        self._finished: deque[int] = deque(maxlen=32)  # timestamps of ended events

    def receive(self, packet: RtpPacket, now: float) -> list[DigitStarted | DigitEvent]:
        """Feed one telephone-event RTP packet. Raises DtmfParseError on a short payload."""
        timestamp, marker = packet.timestamp, packet.marker
        ev = TelephoneEvent.parse(packet.payload)
        out: list[DigitStarted | DigitEvent] = []
        if timestamp in self._finished:
            return out  # §2.5.1.4 end retransmissions, or a late packet of an ended event
        cur = self._current
        if cur is not None and timestamp == cur.timestamp:
            cur.duration = max(cur.duration, ev.duration)
            cur.last_seen = now
            if ev.end:
                self._finish(cur, "end", out)
            return out
        if cur is not None:
            if ts_diff(timestamp, cur.timestamp) < 0:
                return out  # a stale packet from before the current event
            if self._is_next_segment(cur, ev, timestamp, marker):
                # §2.5.1.3: a long event continues in a new segment with a new timestamp.
                self._finished.append(cur.timestamp)
                cur.earlier_segments += ts_diff(timestamp, cur.timestamp)
                cur.timestamp = timestamp
                cur.duration = ev.duration
                cur.last_seen = now
                if ev.end:
                    self._finish(cur, "end", out)
                return out
            self._finish(cur, "next", out)
        digit = ev.digit
        cur = _ReceivingEvent(timestamp, ev.event, ev.duration, 0, now)
        self._current = cur
        if digit is not None and self.report_start:
            out.append(DigitStarted(digit, "rfc4733"))
        if ev.end:
            self._finish(cur, "end", out)
        return out

    def _is_next_segment(
        self, cur: _ReceivingEvent, ev: TelephoneEvent, timestamp: int, marker: bool
    ) -> bool:
        if marker or ev.event != cur.event:
            return False
        step = ts_diff(timestamp, cur.timestamp)
        # The new segment starts where the old one's (near-maximal) duration ended.
        return cur.duration >= 0xFFFF - self.clock_rate // 5 and 0 < step <= 0xFFFF + 1

    def _finish(self, cur: _ReceivingEvent, why: str, out: list) -> None:
        self._current = None
        self._finished.append(cur.timestamp)
        digit = event_to_digit(cur.event)
        if digit is not None:  # flash and other non-digit events end silently
            units = cur.earlier_segments + cur.duration
            out.append(DigitEvent(digit, round(units * 1000 / self.clock_rate), "rfc4733", why))

    def get_timer(self) -> float | None:
        cur = self._current
        return None if cur is None else cur.last_seen + self.end_timeout

    def handle_timer(self, now: float) -> list[DigitEvent]:
        cur = self._current
        if cur is None or now < cur.last_seen + self.end_timeout:
            return []
        out: list[DigitEvent] = []
        self._finish(cur, "timeout", out)
        return out


@dataclass(frozen=True, slots=True)
class TelephoneEventPacket:
    """What :class:`Rfc4733Sender` wants sent this tick instead of an audio packet."""

    payload: bytes
    marker: bool
    timestamp: int


class Rfc4733Sender:
    """Produces RFC 4733 packets for queued digits, one per media tick.

    Call :meth:`next_packet` on every tick with the RTP timestamp the audio frame of that tick
    would carry. It returns a :class:`TelephoneEventPacket` to send instead of audio, or None
    (send audio). Per digit (§2.5.1): the first packet has the marker bit; every packet carries
    the event's start timestamp and the duration so far; the final duration goes out three
    times with the E bit. Digits are separated by ``gap_ms`` of audio.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        volume: int = 10,
        end_repeats: int = 3,
    ) -> None:
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.volume = volume
        self.end_repeats = end_repeats
        self._queue: deque[tuple[int, int, int]] = deque()  # (event, duration units, gap ticks)
        self._event: int | None = None
        self._start_ts = 0
        self._elapsed = 0  # units since the current segment's timestamp
        self._total_left = 0
        self._ends_left = 0
        self._gap_left = 0
        self._first = False

    def send(self, digits: str, duration_ms: int = 100, gap_ms: int = 60) -> None:
        for d in digits:
            units = max(self.frame_samples, duration_ms * self.clock_rate // 1000)
            gap_ticks = max(1, math.ceil(gap_ms * self.clock_rate / 1000 / self.frame_samples))
            self._queue.append((digit_to_event(d), units, gap_ticks))

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._event is not None or self._gap_left > 0

    def next_packet(self, timestamp: int) -> TelephoneEventPacket | None:
        if self._event is None:
            if self._gap_left > 0:
                self._gap_left -= 1
                return None
            if not self._queue:
                return None
            self._event, self._total_left, gap = self._queue.popleft()
            self._gap_left = gap
            self._start_ts = timestamp
            self._elapsed = 0
            self._ends_left = self.end_repeats
            self._first = True
        if self._total_left > 0:
            step = min(self.frame_samples, self._total_left)
            if self._elapsed + step > 0xFFFF:
                # §2.5.1.3: close this segment at the maximum duration, continue in a new one.
                self._start_ts = (self._start_ts + self._elapsed) & 0xFFFFFFFF
                self._elapsed = 0
            self._elapsed += step
            self._total_left -= step
            end = False
        else:
            end = True
        packet = self._packet(end)
        if end:
            self._ends_left -= 1
            if self._ends_left <= 0:
                self._event = None
        return packet

    def _packet(self, end: bool) -> TelephoneEventPacket:
        assert self._event is not None
        payload = TelephoneEvent(self._event, end, self.volume, self._elapsed).serialize()
        marker, self._first = self._first, False
        return TelephoneEventPacket(payload, marker, self._start_ts)


# -- SIP INFO bodies --------------------------------------------------------------------------


def parse_dtmf_relay(body: str | bytes) -> DigitEvent:
    """``application/dtmf-relay`` (``Signal=5\\r\\nDuration=160``; duration in ms)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    fields: dict[str, str] = {}
    for line in text.replace("\r", "\n").split("\n"):
        if "=" in line:
            key, _, value = line.partition("=")
            fields[key.strip().lower()] = value.strip()
    signal = fields.get("signal", "")
    if signal == "10":  # some gateways send the event number for * and #
        signal = "*"
    elif signal == "11":
        signal = "#"
    if len(signal) != 1 or signal.upper() not in DTMF_DIGITS:
        raise DtmfParseError(f"dtmf-relay body without a valid Signal: {text!r}")
    duration_text = fields.get("duration", "")
    try:
        duration = int(duration_text) if duration_text else 0
    except ValueError as exc:
        raise DtmfParseError(f"bad Duration in dtmf-relay body: {duration_text!r}") from exc
    if duration < 0:
        raise DtmfParseError("negative Duration")
    return DigitEvent(signal.upper(), duration, "info")


def build_dtmf_relay(digit: str, duration_ms: int = 160) -> str:
    digit_to_event(digit)
    return f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n"


def parse_application_dtmf(body: str | bytes) -> DigitEvent:
    """``application/dtmf``: the body is the digit (a few gateways send ``Signal=d`` here too)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = text.strip()
    if "=" in text:
        return parse_dtmf_relay(text)
    if len(text) != 1 or text.upper() not in DTMF_DIGITS:
        raise DtmfParseError(f"application/dtmf body is not a digit: {text!r}")
    return DigitEvent(text.upper(), 0, "info")


# -- in-band tones ----------------------------------------------------------------------------

LOW_GROUP = (697.0, 770.0, 852.0, 941.0)  # Q.23 row frequencies
HIGH_GROUP = (1209.0, 1336.0, 1477.0, 1633.0)  # Q.23 column frequencies
KEYPAD = ("123A", "456B", "789C", "*0#D")

# Level reference (G.711 Table 5, the µ-law digital milliwatt): a 0 dBm0 sine has an RMS of
# 16016 in 16-bit linear units, i.e. a peak of 22650; the µ-law overload (±8159 in 14-bit
# units = ±32636) is reached by a +3.17 dBm0 sine. The A-law reference (+3.14 dBm0 at ±32768)
# differs by 0.1 dB; we use the µ-law one for both.
DBM0_SINE_AMPLITUDE = 22650.0
_DBM0_POWER = DBM0_SINE_AMPLITUDE**2 / 2.0


def dtmf_tone(
    digit: str,
    duration_s: float,
    level_dbm0: float = -10.0,
    rate: int = 8000,
    twist_db: float = 0.0,
    freq_error: float = 0.0,
    phase: float = 0.0,
) -> np.ndarray:
    """A dual tone as float64 samples (16-bit scale), for tests and generated prompts.

    ``level_dbm0`` is the **total** power of the pair; with ``twist_db`` = 0 each tone is
    3.01 dB below it. ``twist_db`` is high-group level minus low-group level (total kept).
    ``freq_error`` shifts both frequencies by that fraction (0.015 = +1.5 %).
    """
    row = next(i for i, r in enumerate(KEYPAD) if digit.upper() in r)
    col = KEYPAD[row].index(digit.upper())
    f_low = LOW_GROUP[row] * (1 + freq_error)
    f_high = HIGH_GROUP[col] * (1 + freq_error)
    total = _DBM0_POWER * 10 ** (level_dbm0 / 10)
    ratio = 10 ** (twist_db / 10)  # P_high / P_low
    p_low = total / (1 + ratio)
    p_high = total - p_low
    t = np.arange(int(round(duration_s * rate))) / rate
    return math.sqrt(2 * p_low) * np.sin(2 * np.pi * f_low * t + phase) + math.sqrt(
        2 * p_high
    ) * np.sin(2 * np.pi * f_high * t + 1.3 * phase + 0.5)


@dataclass(frozen=True, slots=True)
class DtmfFrameResult:
    """Per 20 ms frame: events that happened, and whether a tone sounded in this frame (so
    the bridge can mute it on the audio sent to the conference)."""

    events: tuple[DigitStarted | DigitEvent, ...]
    tone: bool

    def __iter__(self):
        return iter(self.events)


_NOTHING = DtmfFrameResult((), False)


class InbandDtmfDetector:
    """Numpy DTMF detector for 8 kHz int16 audio, 20 ms frames (ITU-T Q.23 / Q.24).

    Analysis: a 20 ms window every 10 ms (two per frame, the first one straddling the previous
    frame). For each of the 8 Q.23 frequencies we take two Hann-windowed 128-sample DFT bins
    32 samples apart, all with one matrix product; their magnitudes give the tone power and
    their phase difference gives the tone's actual frequency (unambiguous to ±125 Hz), which is
    what lets us accept ±1.5 % and reject ±3.5 % (Q.24) with one cut at ±``max_freq_error``.

    A window holds a digit when, for the strongest tone of each group:
    * its frequency is within ±``max_freq_error`` (2.5 %) of nominal;
    * each tone is at least ``min_tone_dbm0`` and together at least ``min_total_dbm0``;
    * twist: the high group at most ``max_high_over_low_db`` (5 dB) above the low group
      ("forward" twist) and at most ``max_low_over_high_db`` (9 dB) below it ("reverse"):
      the requirement is 4 / 8 dB, the cut sits 1 dB outside it for noise;
    * the two tones carry at least ``min_energy_share`` (85 %) of the window's power: speech
      and music spread their energy over many harmonics, a dual tone does not (this also
      covers a second-harmonic test: harmonic energy counts against the share);
    * the second-strongest tone of each group is ``min_second_peak_db`` (2 dB) weaker.
    Windows quieter than ``min_total_dbm0`` skip the DFT.

    Timing (Q.24: recognise >= 40 ms tones and >= 40 ms pauses): a digit starts after two
    consecutive windows agree (any tone of 40 ms or more contains two full windows) and ends
    after ``end_misses`` (3) windows without it: a 40 ms pause ends it (two windows inside the
    pause, and the ones overlapping its edges hold too little tone to pass), a 10 ms drop-out
    does not. ``DigitEvent`` comes at the end with the measured duration; ``DigitStarted`` on
    confirmation with ``report_start=True``. Each result (and ``tone_active``) says whether
    the frame held a tone, so the bridge can blank it in the audio it forwards.

    Levels are in dBm0 per G.711 (:data:`DBM0_SINE_AMPLITUDE`); a dual-tone level is the total
    power of the pair.
    """

    HOP = 80
    WINDOW = 160
    SUB = 128
    LAG = 32

    def __init__(
        self,
        rate: int = 8000,
        max_freq_error: float = 0.025,
        min_tone_dbm0: float = -36.0,
        min_total_dbm0: float = -32.0,
        max_high_over_low_db: float = 5.0,
        max_low_over_high_db: float = 9.0,
        min_energy_share: float = 0.85,
        min_second_peak_db: float = 2.0,
        end_misses: int = 3,
        report_start: bool = False,
    ) -> None:
        if rate != 8000:
            raise ValueError("the in-band detector runs at 8 kHz (decode or resample first)")
        self.rate = rate
        self.max_freq_error = max_freq_error
        self.min_tone_power = _DBM0_POWER * 10 ** (min_tone_dbm0 / 10)
        self.min_total_power = _DBM0_POWER * 10 ** (min_total_dbm0 / 10)
        self.max_high_over_low = 10 ** (max_high_over_low_db / 10)
        self.max_low_over_high = 10 ** (max_low_over_high_db / 10)
        self.min_energy_share = min_energy_share
        self.min_second_peak = 10 ** (min_second_peak_db / 10)
        self.end_misses = end_misses
        self.report_start = report_start
        self.tone_active = False  # did the last frame contain a tone (bridge: mute it)
        self._freqs = np.array(LOW_GROUP + HIGH_GROUP)
        self._basis = self._make_basis()
        self._x = np.zeros(self.HOP + self.WINDOW, dtype=np.float32)
        # (64, 16): sums re^2 + im^2 of both sub-windows into one power per (window, frequency)
        self._sum_subs = np.zeros((64, 16), dtype=np.float32)
        for window in range(2):
            for sub in range(2):
                for f in range(8):
                    col = 2 * ((window * 2 + sub) * 8 + f)
                    self._sum_subs[col : col + 2, window * 8 + f] = 1.0
        # (240, 2): mean of x^2 over each 20 ms window
        self._window_mean = np.zeros((self.HOP + self.WINDOW, 2), dtype=np.float32)
        self._window_mean[: self.WINDOW, 0] = 1.0 / self.WINDOW
        self._window_mean[self.HOP :, 1] = 1.0 / self.WINDOW
        self._max_offset_hz = [max_freq_error * f for f in self._freqs]
        self._hz_per_radian = rate / (2 * math.pi * self.LAG)
        # state machine
        self._pending: str | None = None
        self._current: str | None = None
        self._misses = 0
        self._windows_on = 0
        # A sine of amplitude A gives |X| = A/2 * sum(w) * g(offset) in each sub-window, so
        # its power A^2/2 = (|X_A|^2 + |X_B|^2) / (sum(w) * g)^2.
        sum_w = float(np.hanning(self.SUB + 2)[1:-1].sum())
        self._raw_to_power = 1.0 / (sum_w * sum_w)
        worst_gain = _hann_gain(max_freq_error * max(HIGH_GROUP) * self.SUB / rate)
        self._raw_to_power_max = self._raw_to_power / (worst_gain * worst_gain)

    def _make_basis(self) -> np.ndarray:
        """(240, 64) float32: for both 20 ms windows of a frame, for sub-windows A and B, for
        the 8 frequencies, the real and imaginary parts of a Hann-windowed DFT row. The phase
        reference is the absolute sample index, so X_B / X_A = exp(2j*pi*df*LAG/rate)."""
        n_total = self.HOP + self.WINDOW
        w = np.hanning(self.SUB + 2)[1:-1]  # periodic-ish Hann without zero end points
        cols = []
        for window_start in (0, self.HOP):
            for sub_start in (0, self.LAG):
                start = window_start + sub_start
                n = np.arange(n_total)
                inside = (n >= start) & (n < start + self.SUB)
                win = np.zeros(n_total)
                win[inside] = w
                for f in self._freqs:
                    arg = 2 * np.pi * f * n / self.rate
                    cols.append(win * np.cos(arg))
                    cols.append(-win * np.sin(arg))
        return np.ascontiguousarray(np.array(cols).T, dtype=np.float32)

    def reset(self) -> None:
        self._x[:] = 0
        self._pending = self._current = None
        self._misses = self._windows_on = 0

    def process(self, frame: np.ndarray) -> DtmfFrameResult:
        """Analyse one 20 ms frame (160 int16 samples at 8 kHz)."""
        if frame.shape != (self.WINDOW,):
            raise ValueError("the detector takes 160-sample frames")
        x = self._x
        x[: self.HOP] = x[self.WINDOW :]
        x[self.HOP :] = frame
        window_power = ((x * x) @ self._window_mean).tolist()  # (2,): mean square
        events: list[DigitStarted | DigitEvent] = []
        tone = False
        if window_power[0] < self.min_total_power and window_power[1] < self.min_total_power:
            # Too quiet for a digit (pauses, silence): skip the DFT.
            self._step(None, events)
            self._step(None, events)
            return self._result(events, False)
        v = x @ self._basis  # (64,): window, sub-window, frequency, re/im
        power = ((v * v) @ self._sum_subs).tolist()  # (16,): window, frequency
        share = self.min_energy_share / self._raw_to_power_max
        for k in (0, 1):
            digit = None
            wp = window_power[k]
            if wp >= self.min_total_power:
                b = 8 * k
                # Cheap rejection: even with the largest scalloping correction the accepted
                # offsets allow, the strongest tones cannot carry the required share.
                if max(power[b : b + 4]) + max(power[b + 4 : b + 8]) >= share * wp:
                    digit = self._classify(v, power[b : b + 8], k, wp)
            tone |= digit is not None
            self._step(digit, events)
        return self._result(events, tone)

    def _result(self, events: list, tone: bool) -> DtmfFrameResult:
        tone = tone or self._current is not None
        self.tone_active = tone
        if not events and not tone:
            return _NOTHING
        return DtmfFrameResult(tuple(events), tone)

    def _classify(
        self, v: np.ndarray, power: list[float], window: int, window_power: float
    ) -> str | None:
        low = power[:4]
        high = power[4:]
        p_low_raw = max(low)
        p_high_raw = max(high)
        i = low.index(p_low_raw)
        j = high.index(p_high_raw) + 4
        low.sort()
        high.sort()
        if (
            p_low_raw < self.min_second_peak * low[-2]
            or p_high_raw < self.min_second_peak * high[-2]
        ):
            return None
        tone_power = []
        for idx in (i, j):
            # phase advance of the tone from sub-window A to B (LAG samples) -> frequency offset
            a = 2 * (16 * window + idx)
            b = a + 16
            re_a, im_a, re_b, im_b = float(v[a]), float(v[a + 1]), float(v[b]), float(v[b + 1])
            cross_re = re_b * re_a + im_b * im_a
            cross_im = im_b * re_a - re_b * im_a
            offset_hz = math.atan2(cross_im, cross_re) * self._hz_per_radian
            if abs(offset_hz) > self._max_offset_hz[idx]:
                return None
            gain = _hann_gain(offset_hz * self.SUB / self.rate)
            tone_power.append(power[idx] * self._raw_to_power / (gain * gain))
        p_low, p_high = tone_power
        if p_low < self.min_tone_power or p_high < self.min_tone_power:
            return None
        if p_low + p_high < self.min_total_power:
            return None
        if p_high > self.max_high_over_low * p_low or p_low > self.max_low_over_high * p_high:
            return None
        if p_low + p_high < self.min_energy_share * window_power:
            return None
        return KEYPAD[i][j - 4]

    def _step(self, digit: str | None, events: list) -> None:
        if self._current is not None:
            if digit == self._current:
                self._misses = 0
                self._windows_on += 1
                return
            self._misses += 1
            if self._misses >= self.end_misses:
                duration = (self._windows_on - 1) * 10 + 20
                events.append(DigitEvent(self._current, duration, "inband"))
                self._current = None
                self._misses = 0
                self._pending = digit
            return
        if digit is not None and digit == self._pending:
            self._current = digit
            self._windows_on = 2
            self._misses = 0
            self._pending = None
            if self.report_start:
                events.append(DigitStarted(digit, "inband"))
        else:
            self._pending = digit


def _hann_gain(bins: float) -> float:
    """|W(b)| / W(0) for a Hann window, b in DFT bins of the window length."""
    b = abs(bins)
    if b < 1e-6:
        return 1.0
    if abs(b - 1.0) < 1e-6:
        return 0.5
    return abs(math.sin(math.pi * b) / (math.pi * b) / (1 - b * b))
