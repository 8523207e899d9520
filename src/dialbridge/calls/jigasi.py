"""Jigasi's JSON-over-SIP-INFO protocol, sans-IO: parse what Jigasi sends, build what we send.

Theory of operation
-------------------
Jigasi and the IVR exchange one compact JSON object per in-dialog INFO with
``Content-Type: application/json`` (jigasi-protocol.md §4.1). Two families share the channel
(§4.2):

* the **numeric family** ``{"i": <int>, "t": <int>, "d": <data>}`` -- lobby (t=3..7), AV
  moderation (t=8..10), heartbeat (t=11), visitor (t=12), live (t=14/15);
* the **string family** ``{"type": "muteRequest"|"muteResponse", "id": "<string>",
  "data": {"audio": <bool>}, "status": "OK"|"FAILED"}``.

This module only turns bodies into small immutable message objects and back. It keeps no state
and does no I/O: which message answers which, and what the caller hears, is
:mod:`dialbridge.calls.in_call`'s business.

Rules it keeps, each from a Jigasi fact:

* ``t`` and ``i`` are JSON integers on the way out; Jigasi casts them to ``Long`` and a string
  aborts the whole message (§4.2, ``AudioModeration.onJSONReceived``).
* ``id`` is a JSON string, ``data.audio`` a JSON boolean; Jigasi casts both (§4.2).
* ``type`` and ``status`` are compared case-insensitively, as Jigasi does.
* Key order is arbitrary on the way in (json-simple); we emit a fixed order for readable logs.
* A body we cannot use is a *remote* error (:class:`JigasiProtocolError`): the caller logs it
  and carries on -- the INFO has already been answered 200 by the SIP layer (§4.1: an
  unanswered in-dialog request makes Jigasi hang up). Misusing the builders is a *local* error
  (:class:`JigasiLocalError`).
* A well-formed message of a type we do not know is not an error: it parses to
  :class:`UnknownMessage` so a newer Jigasi cannot break a call.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONTENT_TYPE",
    "AvModerationApproved",
    "AvModerationDenied",
    "AvModerationEnabled",
    "CallIsLive",
    "CallNotLive",
    "Heartbeat",
    "JigasiLocalError",
    "JigasiMessage",
    "JigasiProtocolError",
    "LobbyAllowedJoin",
    "LobbyJoined",
    "LobbyLeft",
    "LobbyRejectedJoin",
    "MessageType",
    "MuteRequest",
    "MuteResponse",
    "MuteStatus",
    "RequestRoomAccess",
    "UnknownMessage",
    "VisitorStatus",
    "build_message",
    "is_json_info",
    "new_request_id",
    "parse_message",
]

#: The only body type Jigasi sends and accepts for these messages (§4.1).
CONTENT_TYPE = "application/json"

#: Jigasi accepts any length, but VoxEngine capped bodies at 8 KiB and nothing legitimate is
#: longer than a few hundred bytes: anything bigger is garbage, not a message.
MAX_BODY = 8192


class JigasiProtocolError(ValueError):
    """Jigasi (or whoever is on the dialog) sent a body we cannot use: a remote error."""


class JigasiLocalError(ValueError):
    """We asked to build a message Jigasi would reject: a bug on our side."""


class MessageType(enum.IntEnum):
    """The numeric ``t`` values, named as in Jigasi's ``SipInfoJsonProtocol.MESSAGE_TYPE``."""

    LOBBY_JOINED = 3
    REQUEST_ROOM_ACCESS = 4
    LOBBY_LEFT = 5
    LOBBY_ALLOWED_JOIN = 6
    LOBBY_REJECTED_JOIN = 7
    AV_MODERATION_ENABLED = 8
    AV_MODERATION_APPROVED = 9
    AV_MODERATION_DENIED = 10
    SIP_CALL_HEARTBEAT = 11
    SIP_CALL_VISITOR = 12
    SIP_CALL_NOT_LIVE = 14  # 2024-09 .. 2026-01, replaced by t=15
    SIP_CALL_IS_LIVE = 15


class MuteStatus(enum.Enum):
    OK = "OK"
    FAILED = "FAILED"


# -- the numeric family (§4.3) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LobbyJoined:
    """t=3: Jigasi waits in the lobby (the call was answered for it); ask for the password."""

    i: int | None = None


@dataclass(frozen=True, slots=True)
class RequestRoomAccess:
    """t=4, ours: the password the caller typed while lobbied. Jigasi acts on it only while it
    is not in the main room (§4.3)."""

    password: str
    i: int | None = None


@dataclass(frozen=True, slots=True)
class LobbyLeft:
    """t=5: left the lobby (comes together with t=6 on admission)."""

    i: int | None = None


@dataclass(frozen=True, slots=True)
class LobbyAllowedJoin:
    """t=6: a moderator admitted us, or the lobby was switched off."""

    i: int | None = None


@dataclass(frozen=True, slots=True)
class LobbyRejectedJoin:
    """t=7: a moderator refused us; Jigasi will send BYE after its own prompt."""

    i: int | None = None


@dataclass(frozen=True, slots=True)
class AvModerationEnabled:
    """t=8: audio moderation switched on (``True``) or off; also sent on role changes."""

    enabled: bool


@dataclass(frozen=True, slots=True)
class AvModerationApproved:
    """t=9: this participant may unmute."""


@dataclass(frozen=True, slots=True)
class AvModerationDenied:
    """t=10: the approval was withdrawn."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """t=11: Jigasi's heartbeat, and our reply to it (§4.6): each of ours cancels one of its."""


@dataclass(frozen=True, slots=True)
class VisitorStatus:
    """t=12: joined as a visitor (``True``, followed by a muteRequest) or promoted (``False``)."""

    visitor: bool


@dataclass(frozen=True, slots=True)
class CallNotLive:
    """t=14 (old visitor queue): the conference is not live yet."""

    not_live: bool


@dataclass(frozen=True, slots=True)
class CallIsLive:
    """t=15: ``False`` = waiting for the conference to go live; ``True`` = live and joined."""

    live: bool


# -- the string family (§4.3, §4.4) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MuteRequest:
    """``audio=True``: mute, ``False``: unmute. From Jigasi always ``True`` (§4.3)."""

    id: str
    audio: bool


@dataclass(frozen=True, slots=True)
class MuteResponse:
    """The answer to a :class:`MuteRequest`, echoing its ``id``. Jigasi's FAILED can come
    without a usable ``audio`` value in theory, hence ``None``."""

    id: str
    status: MuteStatus
    audio: bool | None

    @property
    def ok(self) -> bool:
        return self.status is MuteStatus.OK


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """Valid JSON of a type we do not know (a newer Jigasi): logged, never an error."""

    raw: dict[str, Any]


JigasiMessage = (
    LobbyJoined
    | RequestRoomAccess
    | LobbyLeft
    | LobbyAllowedJoin
    | LobbyRejectedJoin
    | AvModerationEnabled
    | AvModerationApproved
    | AvModerationDenied
    | Heartbeat
    | VisitorStatus
    | CallNotLive
    | CallIsLive
    | MuteRequest
    | MuteResponse
    | UnknownMessage
)


def new_request_id() -> str:
    """A fresh muteRequest id: a random UUID string, as Jigasi makes its own (§4.2)."""
    return str(uuid.uuid4())


def is_json_info(content_type: str | None) -> bool:
    """Is this INFO one of ours? Jigasi matches the type case-insensitively and allows a
    charset parameter (§4.1)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == CONTENT_TYPE


# -- parsing ----------------------------------------------------------------------------------


def _integer(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int in Python; Jigasi's Long cast rejects JSON true/false.
    if isinstance(value, bool) or not isinstance(value, int):
        raise JigasiProtocolError(f"{key!r} must be a JSON integer, got {value!r}")
    return value


def _boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise JigasiProtocolError(f"{what} must be a JSON boolean, got {value!r}")
    return value


def _parse_numeric(obj: dict[str, Any]) -> JigasiMessage:
    t = _integer(obj, "t")
    i = _integer(obj, "i")
    d = obj.get("d")
    try:
        kind = MessageType(t)
    except ValueError:
        return UnknownMessage(obj)
    match kind:
        case MessageType.LOBBY_JOINED:
            return LobbyJoined(i)
        case MessageType.REQUEST_ROOM_ACCESS:
            if not isinstance(d, dict) or not isinstance(d.get("pwd"), str):
                raise JigasiProtocolError('t=4 needs "d": {"pwd": "<string>"}')
            return RequestRoomAccess(d["pwd"], i)
        case MessageType.LOBBY_LEFT:
            return LobbyLeft(i)
        case MessageType.LOBBY_ALLOWED_JOIN:
            return LobbyAllowedJoin(i)
        case MessageType.LOBBY_REJECTED_JOIN:
            return LobbyRejectedJoin(i)
        case MessageType.AV_MODERATION_ENABLED:
            return AvModerationEnabled(_boolean(d, "t=8 d"))
        case MessageType.AV_MODERATION_APPROVED:
            return AvModerationApproved()
        case MessageType.AV_MODERATION_DENIED:
            return AvModerationDenied()
        case MessageType.SIP_CALL_HEARTBEAT:
            return Heartbeat()
        case MessageType.SIP_CALL_VISITOR:
            return VisitorStatus(_boolean(d, "t=12 d"))
        case MessageType.SIP_CALL_NOT_LIVE:
            return CallNotLive(_boolean(d, "t=14 d"))
        case MessageType.SIP_CALL_IS_LIVE:
            return CallIsLive(_boolean(d, "t=15 d"))
    raise AssertionError(kind)  # pragma: no cover - the match is exhaustive


def _parse_mute(obj: dict[str, Any]) -> JigasiMessage:
    kind = obj["type"]
    if not isinstance(kind, str):
        raise JigasiProtocolError(f'"type" must be a string, got {kind!r}')
    mid = obj.get("id")
    if not isinstance(mid, str):
        # Jigasi: "Unknown json object id!" -- the message is dropped.
        raise JigasiProtocolError(f'"id" must be a JSON string, got {mid!r}')
    data = obj.get("data")
    audio = data.get("audio") if isinstance(data, dict) else None
    if kind.lower() == "muterequest":
        return MuteRequest(mid, _boolean(audio, "muteRequest data.audio"))
    if kind.lower() == "muteresponse":
        status = obj.get("status")
        if not isinstance(status, str):
            raise JigasiProtocolError(f'muteResponse "status" must be a string, got {status!r}')
        ok = MuteStatus.OK if status.upper() == "OK" else MuteStatus.FAILED
        if audio is not None and not isinstance(audio, bool):
            raise JigasiProtocolError(f"muteResponse data.audio must be a boolean, got {audio!r}")
        return MuteResponse(mid, ok, audio)
    return UnknownMessage(obj)


def parse_message(body: bytes | str) -> JigasiMessage:
    """Parse one INFO body. Raises :class:`JigasiProtocolError` for anything unusable."""
    if len(body) > MAX_BODY:
        raise JigasiProtocolError(f"INFO body of {len(body)} bytes is too long")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JigasiProtocolError(f"INFO body is not UTF-8: {exc}") from None
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise JigasiProtocolError(f"INFO body is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise JigasiProtocolError(f"INFO body is not a JSON object: {body[:80]!r}")
    # Jigasi looks at "type" after "t" in one object; nothing sends both, so type wins.
    if "type" in obj:
        return _parse_mute(obj)
    if "t" in obj:
        return _parse_numeric(obj)
    return UnknownMessage(obj)


# -- building ---------------------------------------------------------------------------------


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


def _with_i(t: MessageType, i: int | None, **rest: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if i is not None:
        if isinstance(i, bool) or not isinstance(i, int):
            raise JigasiLocalError("i must be an integer")
        obj["i"] = i
    obj["t"] = int(t)
    obj.update(rest)
    return obj


def build_message(message: JigasiMessage) -> str:
    """The compact JSON body (``application/json``) of a message.

    We send :class:`MuteRequest`, :class:`MuteResponse`, :class:`Heartbeat` and
    :class:`RequestRoomAccess`; the rest are built too, for Jigasi stand-ins in tests.
    """
    match message:
        case MuteRequest(id=mid, audio=audio):
            _check_mute_fields(mid, audio)
            return _dump({"type": "muteRequest", "id": mid, "data": {"audio": audio}})
        case MuteResponse(id=mid, status=status, audio=audio):
            _check_mute_fields(mid, audio)
            return _dump(
                {
                    "type": "muteResponse",
                    "id": mid,
                    "status": status.value,
                    "data": {"audio": audio},
                }
            )
        case Heartbeat():
            return _dump({"t": int(MessageType.SIP_CALL_HEARTBEAT)})
        case RequestRoomAccess(password=password, i=i):
            if not isinstance(password, str):
                raise JigasiLocalError("the lobby password must be a string")
            return _dump(_with_i(MessageType.REQUEST_ROOM_ACCESS, i, d={"pwd": password}))
        case LobbyJoined(i=i):
            return _dump(_with_i(MessageType.LOBBY_JOINED, i))
        case LobbyLeft(i=i):
            return _dump(_with_i(MessageType.LOBBY_LEFT, i))
        case LobbyAllowedJoin(i=i):
            return _dump(_with_i(MessageType.LOBBY_ALLOWED_JOIN, i))
        case LobbyRejectedJoin(i=i):
            return _dump(_with_i(MessageType.LOBBY_REJECTED_JOIN, i))
        case AvModerationEnabled(enabled=flag):
            return _dump(_with_i(MessageType.AV_MODERATION_ENABLED, None, d=bool(flag)))
        case AvModerationApproved():
            return _dump(_with_i(MessageType.AV_MODERATION_APPROVED, None))
        case AvModerationDenied():
            return _dump(_with_i(MessageType.AV_MODERATION_DENIED, None))
        case VisitorStatus(visitor=flag):
            return _dump(_with_i(MessageType.SIP_CALL_VISITOR, None, d=bool(flag)))
        case CallNotLive(not_live=flag):
            return _dump(_with_i(MessageType.SIP_CALL_NOT_LIVE, None, d=bool(flag)))
        case CallIsLive(live=flag):
            return _dump(_with_i(MessageType.SIP_CALL_IS_LIVE, None, d=bool(flag)))
        case UnknownMessage(raw=raw):
            return _dump(raw)
    raise JigasiLocalError(f"cannot build {message!r}")


def _check_mute_fields(mid: object, audio: object) -> None:
    if not isinstance(mid, str) or not mid:
        raise JigasiLocalError("a mute message needs a non-empty string id")
    if not isinstance(audio, bool):
        raise JigasiLocalError("data.audio must be a bool")
