"""Jigasi's INFO JSON (jigasi-protocol.md §4): every message type, both directions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialbridge.calls.jigasi import (
    AvModerationApproved,
    AvModerationDenied,
    AvModerationEnabled,
    CallIsLive,
    CallNotLive,
    Heartbeat,
    JigasiLocalError,
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

# -- what Jigasi sends, in the shapes of §4.3 (key order is arbitrary: json-simple) ----------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"i":0,"t":3}', LobbyJoined(0)),
        ('{"t":3,"i":4}', LobbyJoined(4)),
        ('{"i":1,"t":5}', LobbyLeft(1)),
        ('{"i":2,"t":6}', LobbyAllowedJoin(2)),
        ('{"i":3,"t":7}', LobbyRejectedJoin(3)),
        ('{"t":8,"d":true}', AvModerationEnabled(True)),
        ('{"d":false,"t":8}', AvModerationEnabled(False)),
        ('{"t":9}', AvModerationApproved()),
        ('{"t":10}', AvModerationDenied()),
        ('{"t":11}', Heartbeat()),
        ('{"t":12,"d":true}', VisitorStatus(True)),
        ('{"t":12,"d":false}', VisitorStatus(False)),
        ('{"t":14,"d":true}', CallNotLive(True)),
        ('{"t":15,"d":false}', CallIsLive(False)),
        ('{"t":15,"d":true}', CallIsLive(True)),
        (
            '{"type":"muteRequest","data":{"audio":true},"id":"6f1c-uuid"}',
            MuteRequest("6f1c-uuid", True),
        ),
        (
            '{"type":"muteResponse","data":{"audio":false},"id":"x1","status":"OK"}',
            MuteResponse("x1", MuteStatus.OK, False),
        ),
        (
            '{"status":"FAILED","type":"muteResponse","data":{"audio":false},"id":"x2"}',
            MuteResponse("x2", MuteStatus.FAILED, False),
        ),
    ],
)
def test_every_jigasi_message_type_parses(body: str, expected: object) -> None:
    assert parse_message(body) == expected
    assert parse_message(body.encode()) == expected


def test_type_and_status_are_case_insensitive_like_jigasi() -> None:
    msg = parse_message('{"type":"MUTERESPONSE","id":"a","status":"ok","data":{"audio":true}}')
    assert msg == MuteResponse("a", MuteStatus.OK, True)
    assert msg.ok


def test_t4_from_a_peer_parses_with_its_password() -> None:
    assert parse_message('{"t":4,"d":{"pwd":"1234"}}') == RequestRoomAccess("1234")


def test_unknown_numeric_type_is_not_an_error() -> None:
    msg = parse_message('{"t":42,"d":"future"}')
    assert isinstance(msg, UnknownMessage)
    assert msg.raw == {"t": 42, "d": "future"}


def test_unknown_string_type_is_not_an_error() -> None:
    assert isinstance(parse_message('{"type":"raiseHand","id":"z"}'), UnknownMessage)


def test_object_without_t_or_type_is_unknown() -> None:
    assert parse_message("{}") == UnknownMessage({})


# -- remote errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"t":11',
        b"[1,2]",
        b'"t"',
        b"\xff\xfe{}",
        b'{"t":"11"}',  # Jigasi casts t to Long: a string aborts the message
        b'{"t":true}',
        b'{"t":3,"i":"0"}',
        b'{"t":11.5}',
        b'{"t":8}',  # d must be a boolean
        b'{"t":8,"d":"true"}',
        b'{"t":4,"d":{"pwd":1234}}',
        b'{"t":4}',
        b'{"type":"muteRequest","data":{"audio":true}}',  # "Unknown json object id!"
        b'{"type":"muteRequest","id":7,"data":{"audio":true}}',
        b'{"type":"muteRequest","id":"a","data":{"audio":"true"}}',
        b'{"type":"muteRequest","id":"a"}',
        b'{"type":"muteResponse","id":"a","data":{"audio":true}}',  # "without status!"
        b'{"type":5,"id":"a"}',
        b"{" + b'"a":' * 10 + b"1" + b"}" * 10,
        b'{"x":"' + b"a" * 9000 + b'"}',
    ],
)
def test_malformed_bodies_are_remote_errors(body: bytes) -> None:
    with pytest.raises(JigasiProtocolError):
        parse_message(body)


def _parses_or_reports(body: bytes | str) -> None:
    try:
        msg = parse_message(body)
    except JigasiProtocolError as exc:
        assert str(exc)  # a reason for the log
    else:
        assert isinstance(msg, JigasiMessage.__args__)


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_a_remote_error(body: bytes) -> None:
    _parses_or_reports(body)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3)
                    | st.dictionaries(st.sampled_from(["t", "i", "d", "type", "id", "data",
                                                       "status", "audio", "pwd"]), kids,
                                      max_size=5),
                    max_leaves=12))  # fmt: skip
def test_random_json_never_raises_anything_but_a_remote_error(value: object) -> None:
    _parses_or_reports(json.dumps(value))


# -- what we send --------------------------------------------------------------------------------


def test_mute_request_has_string_id_and_boolean_audio() -> None:
    body = build_message(MuteRequest("abc-123", True))
    assert body == '{"type":"muteRequest","id":"abc-123","data":{"audio":true}}'
    obj = json.loads(body)
    assert isinstance(obj["id"], str)
    assert obj["data"]["audio"] is True


def test_mute_response_echoes_id_and_audio_with_status() -> None:
    body = build_message(MuteResponse("j-uuid", MuteStatus.OK, True))
    assert json.loads(body) == {
        "type": "muteResponse",
        "id": "j-uuid",
        "status": "OK",
        "data": {"audio": True},
    }


def test_heartbeat_reply_is_integer_t11() -> None:
    body = build_message(Heartbeat())
    assert body == '{"t":11}'
    assert type(json.loads(body)["t"]) is int


def test_room_access_request_carries_password_with_integer_t() -> None:
    assert build_message(RequestRoomAccess("0815")) == '{"t":4,"d":{"pwd":"0815"}}'
    assert json.loads(build_message(RequestRoomAccess("1", i=3))) == {
        "i": 3,
        "t": 4,
        "d": {"pwd": "1"},
    }


@pytest.mark.parametrize(
    "message",
    [
        MuteRequest("i", "true"),  # type: ignore[arg-type]
        MuteRequest(7, True),  # type: ignore[arg-type]
        MuteRequest("", True),
        MuteResponse("i", MuteStatus.OK, None),
        RequestRoomAccess(1234),  # type: ignore[arg-type]
        RequestRoomAccess("1", i="2"),  # type: ignore[arg-type]
    ],
)
def test_building_what_jigasi_would_reject_is_a_local_error(message: object) -> None:
    with pytest.raises(JigasiLocalError):
        build_message(message)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        LobbyJoined(0),
        LobbyLeft(1),
        LobbyAllowedJoin(2),
        LobbyRejectedJoin(3),
        RequestRoomAccess("42"),
        AvModerationEnabled(True),
        AvModerationApproved(),
        AvModerationDenied(),
        Heartbeat(),
        VisitorStatus(False),
        CallNotLive(True),
        CallIsLive(True),
        MuteRequest("r", False),
        MuteResponse("r", MuteStatus.FAILED, False),
    ],
)
def test_every_message_round_trips(message: object) -> None:
    assert parse_message(build_message(message)) == message  # type: ignore[arg-type]


def test_request_ids_are_fresh_strings() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(isinstance(i, str) and len(i) == 36 for i in ids)


@pytest.mark.parametrize(
    ("content_type", "ours"),
    [
        ("application/json", True),
        ("Application/JSON", True),
        ("application/json; charset=UTF-8", True),
        ("application/dtmf-relay", False),
        ("", False),
        (None, False),
    ],
)
def test_json_info_content_type_match(content_type: str | None, ours: bool) -> None:
    assert is_json_info(content_type) is ours
