"""In-call controls: what the phone caller can do once bridged to Jigasi, and what they hear.

Theory of operation
-------------------
:class:`InCallControls` is a sans-IO state machine for one call. It is fed

* the caller's DTMF digits (``receive_digit``),
* the bodies of Jigasi's in-dialog INFOs (``receive_info``) -- already answered 200 by the SIP
  layer, because Jigasi hangs up when one of its requests goes unanswered (jigasi-protocol.md
  §4.1),
* the final response to each INFO we sent (``info_answered``),
* the end of the prompt it asked for (``prompt_finished``) and timer expiries
  (``handle_timer``), always with ``now`` in seconds,

and hands back *actions* through ``next_action()``: :class:`SendInfo` (a JSON body for an INFO
to Jigasi), :class:`Say` (prompt keys of :mod:`dialbridge.prompts`), :class:`ApplyLocalMute`
(stop or resume forwarding the caller's audio in our own media bridge) and :class:`HangUp`.
It never does I/O, never sleeps and never reads a clock: ``get_timer()`` says when it next
wants ``handle_timer``. :class:`InCallSession` at the bottom is the thin asyncio edge.

Everything that changes the phase lives in the :data:`TRANSITIONS` table: phase → stimulus →
(handler, next phase). Handlers only compute actions and the sub-state below; a stimulus that
is not in a phase's row is absorbed (and logged), never an error -- the reference IVR's worst
bug was a wrong key sequence that silently switched the controls off (reference-scenarios.md
§4.3); here no input can do that.

Sub-state kept beside the phase, all from Jigasi facts (§4.3, §4.4):

* ``muted`` -- what Jigasi last confirmed (a ``muteResponse`` OK, or its own ``muteRequest``).
  It is read from ``data.audio``, not flipped (the reference flipped it).
* ``pending`` -- our one outstanding ``muteRequest``. Jigasi sends the ``muteResponse`` before
  it answers our INFO with 200, so a 200 without a response means none will come (the
  mixer-mode regression of §4.4); after a short grace for reordering, or after
  ``mute_response_timeout`` at the latest, the request is given up and the keys re-armed.
* ``moderation`` / ``allowed_to_unmute`` (t=8/9/10), ``visitor`` (t=12), ``hand_raised``:
  under AV moderation an unmute is refused (FAILED) and Jigasi raises the hand; a visitor's
  unmute raises the hand and gets no response at all; a successful unmute lowers the hand.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialbridge.calls.jigasi import (
    CONTENT_TYPE,
    AvModerationApproved,
    AvModerationDenied,
    AvModerationEnabled,
    CallIsLive,
    CallNotLive,
    Heartbeat,
    JigasiMessage,
    JigasiProtocolError,
    LobbyAllowedJoin,
    LobbyJoined,
    LobbyLeft,
    LobbyRejectedJoin,
    MuteRequest,
    MuteResponse,
    MuteStatus,
    RequestRoomAccess,
    UnknownMessage,
    VisitorStatus,
    build_message,
    is_json_info,
    new_request_id,
    parse_message,
)

__all__ = [
    "DEFAULT_KEYMAP",
    "TRANSITIONS",
    "Action",
    "ApplyLocalMute",
    "Control",
    "HangUp",
    "InCallControls",
    "InCallPorts",
    "InCallSession",
    "InCallSettings",
    "KeyMatcher",
    "PROMPT_KEYS",
    "Phase",
    "Say",
    "SendInfo",
    "Stimulus",
]

log = logging.getLogger(__name__)


class Control(enum.Enum):
    """What a key sequence asks for."""

    MUTE_TOGGLE = "mute_toggle"
    RAISE_HAND = "raise_hand"
    HELP = "help"


#: ``*6`` mute toggle as in the reference (§4.3); ``*9`` raise hand and ``*1`` help are ours.
DEFAULT_KEYMAP: Mapping[str, Control] = {
    "*6": Control.MUTE_TOGGLE,
    "*9": Control.RAISE_HAND,
    "*1": Control.HELP,
}

DTMF_DIGITS = frozenset("0123456789*#ABCD")

#: Every prompt key the controls may ask for (all in :mod:`dialbridge.prompts.catalogue`).
PROMPT_KEYS = frozenset(
    {
        "muted",
        "unmuted",
        "mute_failed",
        "cannot_unmute_hand_raised",
        "hand_raised",
        "hand_lowered",
        "hand_not_needed",
        "help",
        "moderation_on",
        "moderation_off",
        "unmute_allowed",
        "unmute_withdrawn",
        "visitor",
        "promoted",
        "meeting_live",
        "meeting_not_live",
        "time_warning",
        "lobby_wait",
        "lobby_joined",
        "lobby_rejected",
        "connecting",
    }
)


@dataclass(frozen=True, slots=True)
class InCallSettings:
    keymap: Mapping[str, Control] = field(default_factory=lambda: dict(DEFAULT_KEYMAP))
    #: Longest wait for Jigasi's muteResponse. Jigasi answers our INFO only after it has dealt
    #: with it, which can take ~15 s while a Jicofo IQ is outstanding (§4.1).
    mute_response_timeout: float = 20.0
    #: After the 200 to our muteRequest, how long a late (reordered) muteResponse may still come.
    response_grace: float = 1.0
    #: A started key sequence (``*``) is forgotten after this long without the next digit.
    inter_digit_timeout: float = 3.0
    #: Also mute in our own media bridge. Jigasi's mute only works in translator mode on
    #: current versions (§4.4); our local mute works everywhere and keeps RTP flowing (§1.6).
    local_mute: bool = True
    #: Say the mute state (with the key to change it) when the controls start.
    announce_on_start: bool = True
    #: Spoken warning this many seconds before the call's maximum duration.
    time_warning: float = 60.0
    #: After "not admitted", hang up when the prompt ends or after this long at the latest.
    leave_timeout: float = 15.0
    #: Longest lobby password accepted from the keypad.
    max_password_digits: int = 32

    def __post_init__(self) -> None:
        for keys in self.keymap:
            if not keys or any(k not in DTMF_DIGITS for k in keys):
                raise ValueError(f"key sequence {keys!r} is not made of DTMF digits 0-9 * # A-D")
        sequences = list(self.keymap)
        for a in sequences:
            for b in sequences:
                if a != b and b.startswith(a):
                    raise ValueError(f"key sequence {a!r} is a prefix of {b!r}")


# -- actions (outputs) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendInfo:
    """Send an in-dialog INFO to Jigasi. Report its final response with
    ``info_answered(token, status, now)`` (``token`` is None when nobody cares)."""

    body: str
    token: str | None = None
    content_type: str = CONTENT_TYPE


@dataclass(frozen=True, slots=True)
class Say:
    """Play these prompts to the caller, in order. ``interrupt``: stop what the controls were
    saying first (fresh feedback to a key press); otherwise queue behind it."""

    prompts: tuple[str, ...]
    interrupt: bool = False


@dataclass(frozen=True, slots=True)
class ApplyLocalMute:
    """Stop (``True``) or resume forwarding the caller's audio to Jigasi in our bridge."""

    muted: bool


@dataclass(frozen=True, slots=True)
class HangUp:
    reason: str


Action = SendInfo | Say | ApplyLocalMute | HangUp


# -- the key sequences ------------------------------------------------------------------------


class KeyMatcher:
    """Turns single digits into key-map matches. A digit that cannot continue the sequence
    under way drops it and starts afresh from that digit, so ``*5*6`` still means ``*6``:
    no wrong key can leave the matcher stuck."""

    def __init__(self, keymap: Mapping[str, Control], inter_digit_timeout: float) -> None:
        self.keymap = dict(keymap)
        self.prefixes = {seq[:n] for seq in keymap for n in range(1, len(seq))}
        self.timeout = inter_digit_timeout
        self.buffer = ""
        self.deadline: float | None = None

    def feed(self, digit: str, now: float) -> Control | None:
        for candidate in (self.buffer + digit, digit):
            if candidate in self.keymap:
                self.reset()
                return self.keymap[candidate]
            if candidate in self.prefixes:
                self.buffer, self.deadline = candidate, now + self.timeout
                return None
        self.reset()
        return None

    def reset(self) -> None:
        self.buffer, self.deadline = "", None

    def handle_timer(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline:
            self.reset()


# -- the state machine ------------------------------------------------------------------------


class Phase(enum.Enum):
    CONFERENCE = "conference"  # in the room: the key map is live
    LOBBY = "lobby"  # Jigasi waits in the lobby (t=3): digits are the room password
    LEAVING = "leaving"  # not admitted (t=7): saying so, then hanging up
    ENDED = "ended"  # we hung up, or the call is gone: everything is absorbed


class Stimulus(enum.Enum):
    KEY_MUTE_TOGGLE = enum.auto()
    KEY_RAISE_HAND = enum.auto()
    KEY_HELP = enum.auto()
    LOBBY_DIGIT = enum.auto()
    MUTE_REQUEST = enum.auto()  # Jigasi's (§4.4 a/b/c)
    MUTE_RESPONSE = enum.auto()  # to ours
    MUTE_REQUEST_ANSWERED = enum.auto()  # the SIP final response to our muteRequest INFO
    MUTE_RESPONSE_TIMEOUT = enum.auto()
    HEARTBEAT = enum.auto()  # t=11
    LOBBY_JOINED = enum.auto()  # t=3
    LOBBY_LEFT = enum.auto()  # t=5
    LOBBY_ALLOWED_JOIN = enum.auto()  # t=6
    LOBBY_REJECTED_JOIN = enum.auto()  # t=7
    AV_MODERATION_ENABLED = enum.auto()  # t=8
    AV_MODERATION_APPROVED = enum.auto()  # t=9
    AV_MODERATION_DENIED = enum.auto()  # t=10
    VISITOR = enum.auto()  # t=12
    LIVE = enum.auto()  # t=14 / t=15
    UNKNOWN = enum.auto()
    TIME_WARNING = enum.auto()
    PROMPT_FINISHED = enum.auto()
    LEAVE_TIMEOUT = enum.auto()


S = Stimulus
P = Phase

#: Answered in every phase but ENDED: Jigasi hangs up on two unanswered heartbeats (§4.6), and
#: its muteRequest waits for our muteResponse to update the room's view (§4.4).
_ANSWERED_WHILE_UP = {
    S.HEARTBEAT: ("heartbeat", None),
    S.MUTE_REQUEST: ("jigasi_mute_request", None),
    S.MUTE_RESPONSE: ("mute_response", None),
    S.MUTE_REQUEST_ANSWERED: ("mute_request_answered", None),
    S.MUTE_RESPONSE_TIMEOUT: ("mute_response_timeout", None),
}
_STATE_NEWS = {
    S.AV_MODERATION_ENABLED: ("av_moderation_enabled", None),
    S.AV_MODERATION_APPROVED: ("av_moderation_approved", None),
    S.AV_MODERATION_DENIED: ("av_moderation_denied", None),
    S.VISITOR: ("visitor", None),
    S.LIVE: ("live", None),
    S.TIME_WARNING: ("time_warning", None),
    S.LOBBY_LEFT: ("ignore", None),
    S.UNKNOWN: ("ignore", None),
    S.PROMPT_FINISHED: ("ignore", None),
}

#: phase → stimulus → (handler, next phase or None to stay). Compare with docs/in-call.md.
TRANSITIONS: dict[Phase, dict[Stimulus, tuple[str, Phase | None]]] = {
    P.CONFERENCE: {
        S.KEY_MUTE_TOGGLE: ("mute_key", None),
        S.KEY_RAISE_HAND: ("raise_hand_key", None),
        S.KEY_HELP: ("help_key", None),
        S.LOBBY_JOINED: ("lobby_joined", P.LOBBY),
        S.LOBBY_ALLOWED_JOIN: ("lobby_allowed_join", None),
        S.LOBBY_REJECTED_JOIN: ("lobby_rejected_join", P.LEAVING),
        **_ANSWERED_WHILE_UP,
        **_STATE_NEWS,
    },
    P.LOBBY: {
        S.LOBBY_DIGIT: ("lobby_digit", None),  # '#' sends t=4 and moves on (handler)
        S.LOBBY_JOINED: ("ignore", None),
        S.LOBBY_ALLOWED_JOIN: ("lobby_allowed_join", P.CONFERENCE),
        S.LOBBY_REJECTED_JOIN: ("lobby_rejected_join", P.LEAVING),
        **_ANSWERED_WHILE_UP,
        **_STATE_NEWS,
    },
    P.LEAVING: {
        **_ANSWERED_WHILE_UP,
        S.PROMPT_FINISHED: ("leave", P.ENDED),
        S.LEAVE_TIMEOUT: ("leave", P.ENDED),
    },
    P.ENDED: {},
}

_MESSAGE_STIMULUS: dict[type, Stimulus] = {
    MuteRequest: S.MUTE_REQUEST,
    MuteResponse: S.MUTE_RESPONSE,
    Heartbeat: S.HEARTBEAT,
    LobbyJoined: S.LOBBY_JOINED,
    LobbyLeft: S.LOBBY_LEFT,
    LobbyAllowedJoin: S.LOBBY_ALLOWED_JOIN,
    LobbyRejectedJoin: S.LOBBY_REJECTED_JOIN,
    AvModerationEnabled: S.AV_MODERATION_ENABLED,
    AvModerationApproved: S.AV_MODERATION_APPROVED,
    AvModerationDenied: S.AV_MODERATION_DENIED,
    VisitorStatus: S.VISITOR,
    CallIsLive: S.LIVE,
    CallNotLive: S.LIVE,
    UnknownMessage: S.UNKNOWN,
    RequestRoomAccess: S.UNKNOWN,  # ours; Jigasi never sends it
}
_KEY_STIMULUS = {
    Control.MUTE_TOGGLE: S.KEY_MUTE_TOGGLE,
    Control.RAISE_HAND: S.KEY_RAISE_HAND,
    Control.HELP: S.KEY_HELP,
}


class Purpose(enum.Enum):
    MUTE_TOGGLE = "mute_toggle"
    RAISE_HAND = "raise_hand"


@dataclass(slots=True)
class PendingMute:
    id: str
    audio: bool  # what we asked for
    purpose: Purpose
    deadline: float
    answered: bool = False  # the SIP final response to the INFO arrived


class InCallControls:
    """One call's in-call controls (sans-IO). See the module docstring."""

    def __init__(
        self,
        settings: InCallSettings | None = None,
        *,
        muted: bool = False,
        new_id: Callable[[], str] = new_request_id,
    ) -> None:
        self.settings = settings or InCallSettings()
        self.phase = Phase.CONFERENCE
        self.muted = muted
        self.hand_raised = False
        self.moderation = False
        self.allowed_to_unmute = True
        self.visitor = False
        self.pending: PendingMute | None = None
        self.password = ""
        self.deadline: float | None = None  # the call's maximum duration ends here
        self.remote_errors = 0
        self._warn_at: float | None = None
        self._leave_at: float | None = None
        self._keys = KeyMatcher(self.settings.keymap, self.settings.inter_digit_timeout)
        self._new_id = new_id
        self._actions: deque[Action] = deque()
        self._said = False

    # -- inputs ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The phone leg is bridged to Jigasi: the controls go live. Messages fed before this
        (Jigasi's INFOs from before the bridge) count; if they already said something (the
        lobby, a start-muted muteRequest), the state announcement is left out."""
        if self.settings.local_mute and self.muted:
            self._act(ApplyLocalMute(True))
        if self.settings.announce_on_start and not self._said:
            self._say(self._state_prompt())

    def receive_digit(self, digit: str, now: float) -> None:
        if digit not in DTMF_DIGITS:
            log.debug("ignoring non-DTMF key %r", digit)
            return
        if self.phase is Phase.LOBBY:
            self._dispatch(S.LOBBY_DIGIT, digit, now)
            return
        control = self._keys.feed(digit, now)
        if control is not None:
            self._dispatch(_KEY_STIMULUS[control], control, now)

    def receive_info(self, content_type: str | None, body: bytes | str, now: float) -> None:
        """An INFO from Jigasi (already answered 200 by the SIP layer)."""
        if not is_json_info(content_type):
            log.info("ignoring INFO of type %r from Jigasi", content_type)
            return
        try:
            message = parse_message(body)
        except JigasiProtocolError as exc:
            self.remote_errors += 1
            log.warning("unusable INFO JSON from Jigasi (answered 200 anyway): %s", exc)
            return
        self.receive_message(message, now)

    def receive_message(self, message: JigasiMessage, now: float) -> None:
        self._dispatch(_MESSAGE_STIMULUS[type(message)], message, now)

    def info_answered(self, token: str | None, status: int, now: float) -> None:
        """The final response to an INFO we sent (408 when it timed out)."""
        if token is not None:
            self._dispatch(S.MUTE_REQUEST_ANSWERED, (token, status), now)
        elif status >= 300:
            log.warning("Jigasi answered our INFO with %d", status)

    def prompt_finished(self, now: float) -> None:
        """Everything the controls asked to say has been played (or stopped)."""
        self._dispatch(S.PROMPT_FINISHED, None, now)

    def set_deadline(self, deadline: float | None, now: float) -> None:
        """The call ends at ``deadline`` (the call engine hangs up then); we only warn."""
        self.deadline = deadline
        if deadline is None:
            self._warn_at = None
            return
        self._warn_at = max(now, deadline - self.settings.time_warning)

    def ended(self) -> None:
        """The call is over (either side): absorb everything from now on."""
        self.phase = Phase.ENDED
        self.pending = None
        self._warn_at = self._leave_at = None
        self._keys.reset()

    # -- timers ------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if self.phase is Phase.ENDED:
            return None
        candidates = [
            self._keys.deadline,
            self.pending.deadline if self.pending else None,
            self._warn_at,
            self._leave_at,
        ]
        times = [t for t in candidates if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        self._keys.handle_timer(now)
        if self.pending is not None and now >= self.pending.deadline:
            self._dispatch(S.MUTE_RESPONSE_TIMEOUT, self.pending, now)
        if self._warn_at is not None and now >= self._warn_at:
            self._warn_at = None
            self._dispatch(S.TIME_WARNING, None, now)
        if self._leave_at is not None and now >= self._leave_at:
            self._leave_at = None
            self._dispatch(S.LEAVE_TIMEOUT, None, now)

    # -- outputs -----------------------------------------------------------------------------

    def next_action(self) -> Action | None:
        return self._actions.popleft() if self._actions else None

    def actions(self) -> list[Action]:
        """Every queued action, oldest first (convenience for tests and the edge)."""
        out = list(self._actions)
        self._actions.clear()
        return out

    # -- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, stimulus: Stimulus, payload: object, now: float) -> None:
        row = TRANSITIONS[self.phase]
        entry = row.get(stimulus)
        if entry is None:
            log.debug("%s absorbs %s", self.phase.name, stimulus.name)
            return
        handler, next_phase = entry
        getattr(self, "_on_" + handler)(payload, now)
        if next_phase is not None and self.phase is not Phase.ENDED:
            self.phase = next_phase

    def _act(self, action: Action) -> None:
        self._actions.append(action)

    def _say(self, *prompts: str, interrupt: bool = False) -> None:
        assert PROMPT_KEYS.issuperset(prompts), prompts
        self._said = True
        self._act(Say(tuple(prompts), interrupt))

    def _state_prompt(self) -> str:
        return "muted" if self.muted else "unmuted"

    def _send_mute_request(
        self, audio: bool, purpose: Purpose, now: float, *, expect: bool
    ) -> None:
        mid = self._new_id()
        body = build_message(MuteRequest(mid, audio))
        if expect:
            deadline = now + self.settings.mute_response_timeout
            self.pending = PendingMute(mid, audio, purpose, deadline)
            self._act(SendInfo(body, mid))
        else:
            self._act(SendInfo(body))

    def _set_muted(self, muted: bool) -> None:
        changed = muted != self.muted
        self.muted = muted
        if self.settings.local_mute and changed:
            self._act(ApplyLocalMute(muted))

    # -- handlers: keys ----------------------------------------------------------------------

    def _on_ignore(self, payload: object, now: float) -> None:
        if isinstance(payload, UnknownMessage):
            log.info("ignoring unknown Jigasi message %s", payload.raw)

    def _on_mute_key(self, payload: object, now: float) -> None:
        if self.pending is not None:
            return  # one request at a time; the timeout re-arms the key at the latest
        want = not self.muted
        if not want and self.visitor:
            # §4.4: a visitor's unmute raises the hand, and Jigasi sends no muteResponse.
            self._send_mute_request(False, Purpose.MUTE_TOGGLE, now, expect=False)
            self.hand_raised = True
            self._say("cannot_unmute_hand_raised", interrupt=True)
            return
        self._send_mute_request(want, Purpose.MUTE_TOGGLE, now, expect=True)

    def _on_raise_hand_key(self, payload: object, now: float) -> None:
        if self.pending is not None:
            return
        if self.hand_raised:
            self._say("hand_raised", interrupt=True)
        elif self.visitor:
            self._send_mute_request(False, Purpose.RAISE_HAND, now, expect=False)
            self.hand_raised = True
            self._say("hand_raised", interrupt=True)
        elif self.moderation and not self.allowed_to_unmute and self.muted:
            # Jigasi's only hand-raising path: an unmute it must refuse (§4.4).
            self._send_mute_request(False, Purpose.RAISE_HAND, now, expect=True)
        else:
            self._say("hand_not_needed", interrupt=True)

    def _on_help_key(self, payload: object, now: float) -> None:
        self._say("help", self._state_prompt(), interrupt=True)

    # -- handlers: mute ----------------------------------------------------------------------

    def _on_jigasi_mute_request(self, request: MuteRequest, now: float) -> None:
        # Always OK: the IVR has announced it, which is what Jigasi asks for (§4.4); Jigasi then
        # publishes audiomuted=data.audio in the room.
        self._act(SendInfo(build_message(MuteResponse(request.id, MuteStatus.OK, request.audio))))
        self._set_muted(request.audio)
        if self.phase is not Phase.LEAVING:
            self._say(self._state_prompt())

    def _on_mute_response(self, response: MuteResponse, now: float) -> None:
        pending = self.pending
        if pending is None or response.id != pending.id:
            log.info("muteResponse %s matches no request of ours; ignored", response.id)
            return
        self.pending = None
        if response.ok:
            self._mute_confirmed(response.audio if response.audio is not None else pending.audio)
        else:
            self._mute_refused(pending)

    def _mute_confirmed(self, muted: bool) -> None:
        self._set_muted(muted)
        prompts = [self._state_prompt()]
        if not muted and self.hand_raised:
            self.hand_raised = False  # Jigasi lowers the hand on every unmute (§4.4)
            prompts.append("hand_lowered")
        self._say(*prompts, interrupt=True)

    def _mute_refused(self, pending: PendingMute) -> None:
        if not pending.audio and self.moderation and not self.allowed_to_unmute:
            # AV moderation refused the unmute and raised the hand (§4.4).
            self.hand_raised = True
            if pending.purpose is Purpose.RAISE_HAND:
                self._say("hand_raised", interrupt=True)
            else:
                self._say("cannot_unmute_hand_raised", interrupt=True)
        elif not pending.audio and pending.purpose is Purpose.RAISE_HAND:
            self.hand_raised = True
            self._say("hand_raised", interrupt=True)
        else:
            self._say("mute_failed", self._state_prompt(), interrupt=True)

    def _on_mute_request_answered(self, payload: tuple[str, int], now: float) -> None:
        token, status = payload
        pending = self.pending
        if pending is None or pending.id != token:
            return
        if 200 <= status < 300:
            # Jigasi sends its muteResponse before this 200 (§4.1); only reordering is left.
            pending.answered = True
            pending.deadline = min(pending.deadline, now + self.settings.response_grace)
        else:
            log.warning("Jigasi answered our muteRequest with %d", status)
            self._dispatch(S.MUTE_RESPONSE_TIMEOUT, pending, now)

    def _on_mute_response_timeout(self, pending: PendingMute, now: float) -> None:
        self.pending = None
        log.warning(
            "no muteResponse to %s (%s); re-arming the keys",
            pending.id,
            "INFO answered" if pending.answered else "INFO unanswered",
        )
        moderated_unmute = not pending.audio and self.moderation and not self.allowed_to_unmute
        if (
            pending.purpose is Purpose.MUTE_TOGGLE
            and self.settings.local_mute
            and not moderated_unmute
        ):
            # Jigasi did nothing (§4.4 mixer-mode regression): our own bridge does the muting.
            self._set_muted(pending.audio)
            self._say(self._state_prompt(), interrupt=True)
        else:
            self._say("mute_failed", self._state_prompt(), interrupt=True)

    # -- handlers: heartbeat, moderation, visitor, live --------------------------------------

    def _on_heartbeat(self, payload: object, now: float) -> None:
        # §4.6: only our own {"t":11} INFO counts; the SIP 200 does not.
        self._act(SendInfo(build_message(Heartbeat())))

    def _on_av_moderation_enabled(self, message: AvModerationEnabled, now: float) -> None:
        if message.enabled == self.moderation:
            return
        self.moderation = message.enabled
        self.allowed_to_unmute = not message.enabled
        self._say("moderation_on" if message.enabled else "moderation_off")

    def _on_av_moderation_approved(self, payload: object, now: float) -> None:
        self.allowed_to_unmute = True
        self._say("unmute_allowed")

    def _on_av_moderation_denied(self, payload: object, now: float) -> None:
        self.allowed_to_unmute = False
        self._say("unmute_withdrawn")

    def _on_visitor(self, message: VisitorStatus, now: float) -> None:
        if message.visitor == self.visitor:
            return
        self.visitor = message.visitor
        if not message.visitor:
            self.hand_raised = False
        self._say("visitor" if message.visitor else "promoted")

    def _on_live(self, message: CallIsLive | CallNotLive, now: float) -> None:
        live = message.live if isinstance(message, CallIsLive) else not message.not_live
        self._say("meeting_live" if live else "meeting_not_live")

    def _on_time_warning(self, payload: object, now: float) -> None:
        self._say("time_warning")

    # -- handlers: lobby ---------------------------------------------------------------------

    def _on_lobby_joined(self, message: LobbyJoined, now: float) -> None:
        self.password = ""
        self._keys.reset()
        self._say("lobby_wait", interrupt=True)

    def _on_lobby_digit(self, digit: str, now: float) -> None:
        if digit == "*":
            self.password = ""  # start the entry again
        elif digit == "#":
            if self.password:
                # t=4 is only acted on while Jigasi is in the lobby (§4.3); a wrong password
                # ends the call with a BYE, so there is nothing to wait for here.
                self._act(SendInfo(build_message(RequestRoomAccess(self.password))))
                self.password = ""
                self.phase = Phase.CONFERENCE
                self._say("connecting", interrupt=True)
        elif digit.isdigit() and len(self.password) < self.settings.max_password_digits:
            self.password += digit

    def _on_lobby_allowed_join(self, message: LobbyAllowedJoin, now: float) -> None:
        self.password = ""
        self._say("lobby_joined", interrupt=True)

    def _on_lobby_rejected_join(self, message: LobbyRejectedJoin, now: float) -> None:
        self.pending = None
        self._keys.reset()
        self._leave_at = now + self.settings.leave_timeout
        self._say("lobby_rejected", interrupt=True)

    def _on_leave(self, payload: object, now: float) -> None:
        self._leave_at = None
        self._act(HangUp("not admitted from the lobby"))


# -- the asyncio edge ---------------------------------------------------------------------------


class InCallPorts(Protocol):
    """What the edge needs from the call. Every method may raise; the edge logs and goes on."""

    async def send_info(self, content_type: str, body: str) -> int:
        """INFO in the Jigasi dialog; returns the final status (408 on timeout)."""

    async def play(self, prompt: str) -> bool:
        """Play one prompt key to the caller and wait for its end (False: stopped early)."""

    async def stop_prompts(self) -> None:
        """Stop whatever the controls are playing to the caller."""

    async def set_local_mute(self, muted: bool) -> None:
        """Stop or resume forwarding the caller's audio to Jigasi (our media bridge)."""

    async def hangup(self, reason: str) -> None: ...


class InCallSession:
    """Runs :class:`InCallControls` on an event loop: feeds it, performs its actions through
    :class:`InCallPorts`, and arms its one timer. Holds no protocol logic of its own.

    INFOs we send run as their own tasks, because Jigasi may send its muteResponse before it
    answers our INFO (jigasi-protocol.md §4.1): nothing here waits for a response while
    holding up input. Prompts run one after another in a single speaker task; an interrupting
    :class:`Say` stops the current one first."""

    def __init__(
        self,
        controls: InCallControls,
        ports: InCallPorts,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.controls = controls
        self.ports = ports
        self.loop = loop or asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()
        self._queue: deque[str] = deque()
        self._speaker: asyncio.Task | None = None
        self._stop_first = False
        self._hangup: asyncio.Task | None = None
        self.closed = False

    def now(self) -> float:
        return self.loop.time()

    # -- inputs ------------------------------------------------------------------------------

    def start(self) -> None:
        self.controls.start(self.now())
        self._pump()

    def digit(self, digit: str) -> None:
        self.controls.receive_digit(digit, self.now())
        self._pump()

    def info(self, content_type: str | None, body: bytes | str) -> None:
        self.controls.receive_info(content_type, body, self.now())
        self._pump()

    def duration_warning(self, remaining: float) -> None:
        """The call engine's duration limit ends the call in ``remaining`` seconds."""
        now = self.now()
        self.controls.set_deadline(now + remaining, now)
        self._pump()

    def close(self) -> None:
        """The call is over: stop the timer and every task of ours."""
        self.closed = True
        self.controls.ended()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()

    async def wait_idle(self) -> None:
        """Wait until every task started so far is done (for tests and orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- plumbing ----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _pump(self) -> None:
        if self.closed:
            return
        while (action := self.controls.next_action()) is not None:
            self._perform(action)
        self._arm_timer()

    def _arm_timer(self) -> None:
        when = self.controls.get_timer()
        if self._timer is not None:
            if when is not None and self._timer.when() == when:
                return
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.controls.handle_timer(self.now())
        self._pump()

    def _perform(self, action: Action) -> None:
        match action:
            case SendInfo():
                self._spawn(self._send(action))
            case Say(prompts=prompts, interrupt=interrupt):
                if interrupt:
                    self._queue.clear()
                    if self._speaker is not None and not self._speaker.done():
                        self._speaker.cancel()
                        self._speaker = None
                        self._stop_first = True
                self._queue.extend(prompts)
                if self._speaker is None or self._speaker.done():
                    self._speaker = self._spawn(self._speak())
            case ApplyLocalMute(muted=muted):
                self._spawn(self._guard(self.ports.set_local_mute(muted), "local mute"))
            case HangUp(reason=reason):
                # Not one of ours to cancel: hanging up ends the call, whose end closes us.
                self._hangup = self.loop.create_task(
                    self._guard(self.ports.hangup(reason), "hang-up")
                )

    async def _guard(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing port must not end the controls
            log.exception("in-call %s failed", what)

    async def _send(self, action: SendInfo) -> None:
        try:
            status = await self.ports.send_info(action.content_type, action.body)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the dialog is gone, or the transport failed
            log.warning("INFO to Jigasi not sent: %s", exc)
            status = 503
        if not self.closed:
            self.controls.info_answered(action.token, status, self.now())
            self._pump()

    async def _speak(self) -> None:
        if self._stop_first:
            self._stop_first = False
            await self._guard(self.ports.stop_prompts(), "stop prompts")
        while self._queue:
            prompt = self._queue.popleft()
            await self._guard(self.ports.play(prompt), f"prompt {prompt!r}")
        if not self.closed:
            self.controls.prompt_finished(self.now())
            self._pump()


# -- the call engine's hook ------------------------------------------------------------------------


def settings_from_config(config: Any) -> InCallSettings:
    """In-call settings from ``[ivr]`` (``keys``, ``local_mute``, ``announce_in_call``,
    ``mute_response_timeout``) and ``[limits]`` (``warn_before_end_seconds``); every key is
    optional and defaults to :class:`InCallSettings`."""
    ivr = getattr(config, "ivr", None)
    limits = getattr(config, "limits", None)
    kwargs: dict[str, Any] = {}
    keys = getattr(ivr, "keys", None)
    if keys:
        kwargs["keymap"] = {seq: Control(name) for name, seq in keys.items() if seq}
    for attr, name in (
        ("local_mute", "local_mute"),
        ("announce_in_call", "announce_on_start"),
        ("mute_response_timeout", "mute_response_timeout"),
    ):
        value = getattr(ivr, attr, None)
        if value is not None:
            kwargs[name] = value
    warn = getattr(limits, "warn_before_end_seconds", None)
    if warn:
        kwargs["time_warning"] = float(warn)
    return InCallSettings(**kwargs)


class CallPorts:
    """:class:`InCallPorts` over the call engine's :class:`~dialbridge.calls.call.Call`."""

    def __init__(self, call: Any, jigasi: Any, pstn: Any) -> None:
        self.call = call
        self.jigasi = jigasi
        self.pstn = pstn

    async def send_info(self, content_type: str, body: str) -> int:
        return await self.jigasi.send_info(content_type, body)

    async def play(self, prompt: str) -> bool:
        catalogue = self.call.engine.prompts
        path = await asyncio.to_thread(catalogue.path, prompt, self.call.language, self.pstn.codec)
        return await self.call.play(self.pstn, prompt=str(path))

    async def stop_prompts(self) -> None:
        await self.call.engine.media.stop(self.pstn.id)

    async def set_local_mute(self, muted: bool) -> None:
        await self.call.engine.media.mute(self.pstn.id, muted)

    async def hangup(self, reason: str) -> None:
        # The call's hang-up cancels the scenario task we run in; it must finish regardless.
        await asyncio.shield(self.call.hangup(reason, side="dialbridge"))


async def run_in_call(call: Any, jigasi: Any, pstn: Any) -> None:
    """The in-call controls of one bridged call, until it ends (called by
    :func:`dialbridge.calls.scenario.run_in_call`): the caller's digits from ``pstn``,
    Jigasi's INFOs from ``jigasi``, the duration warning from the call."""
    from dialbridge.calls.call import Digit, DurationWarning, HungUp, Info

    session = InCallSession(
        InCallControls(settings_from_config(call.config)), CallPorts(call, jigasi, pstn)
    )
    # call.events() yields events from its first step on. Jigasi's INFOs from before that
    # (t=3 right after a lobby answer, a start-muted muteRequest on dial-out while the phone
    # rang, §4.1 queueing) are in call.history: replay them, then subscribe, with no await in
    # between so that nothing falls into the gap. Digits from before are the IVR's, not ours.
    for event in list(getattr(call, "history", ())):
        if isinstance(event, Info) and event.leg == jigasi.id:
            session.info(event.content_type, event.body)
    session.start()
    try:
        async for event in call.events():
            match event:
                case Digit(leg=leg, digit=digit) if leg == pstn.id:
                    session.digit(digit)
                case Info(leg=leg, content_type=content_type, body=body) if leg == jigasi.id:
                    session.info(content_type, body)
                case DurationWarning(remaining=remaining):
                    session.duration_warning(remaining)
                case HungUp(leg=leg) if leg in (pstn.id, jigasi.id):
                    break
    finally:
        session.close()
