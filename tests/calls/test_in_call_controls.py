"""The in-call state machine, driven with a fake clock (seconds), no I/O."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialbridge.calls.in_call import (
    PROMPT_KEYS,
    TRANSITIONS,
    ApplyLocalMute,
    Control,
    HangUp,
    InCallControls,
    InCallSettings,
    KeyMatcher,
    Phase,
    Say,
    SendInfo,
    Stimulus,
)

T0 = 1000.0


def controls(**kw) -> InCallControls:  # noqa: ANN003
    ids = (f"req-{n}" for n in itertools.count(1))
    muted = kw.pop("muted", False)
    c = InCallControls(InCallSettings(**kw), muted=muted, new_id=lambda: next(ids))
    c.start(T0)
    c.actions()  # drop the start announcement
    return c


def keys(c: InCallControls, digits: str, now: float = T0) -> list:
    for d in digits:
        c.receive_digit(d, now)
    return c.actions()


def info(c: InCallControls, obj: object, now: float = T0) -> list:
    c.receive_info("application/json", json.dumps(obj), now)
    return c.actions()


def sent(actions: list) -> list[dict]:
    return [json.loads(a.body) for a in actions if isinstance(a, SendInfo)]


def said(actions: list) -> list[str]:
    return [p for a in actions if isinstance(a, Say) for p in a.prompts]


def mute_response(mid: str, audio: bool, status: str = "OK") -> dict:
    return {"type": "muteResponse", "id": mid, "status": status, "data": {"audio": audio}}


# -- start ---------------------------------------------------------------------------------------


def test_start_announces_the_mute_state() -> None:
    c = InCallControls()
    c.start(T0)
    assert c.actions() == [Say(("unmuted",))]


def test_start_muted_mutes_locally_and_says_so() -> None:
    c = InCallControls(muted=True)
    c.start(T0)
    assert c.actions() == [ApplyLocalMute(True), Say(("muted",))]


# -- *6 -------------------------------------------------------------------------------------------


def test_star6_sends_mute_request_with_string_id_and_boolean_audio() -> None:
    c = controls()
    actions = keys(c, "*6")
    assert len(actions) == 1
    assert isinstance(actions[0], SendInfo)
    assert actions[0].content_type == "application/json"
    assert actions[0].token == "req-1"
    assert json.loads(actions[0].body) == {
        "type": "muteRequest",
        "id": "req-1",
        "data": {"audio": True},
    }


def test_mute_response_ok_changes_the_prompt() -> None:
    c = controls()
    keys(c, "*6")
    actions = info(c, mute_response("req-1", True))
    assert actions == [ApplyLocalMute(True), Say(("muted",), interrupt=True)]
    assert c.muted
    keys(c, "*6")
    actions = info(c, mute_response("req-2", False))
    assert said(actions) == ["unmuted"]
    assert ApplyLocalMute(False) in actions
    assert not c.muted


def test_mute_response_state_is_read_from_data_audio_not_flipped() -> None:
    c = controls()
    keys(c, "*6")  # asks to mute
    actions = info(c, mute_response("req-1", False))  # Jigasi says: unmuted
    assert said(actions) == ["unmuted"]
    assert not c.muted


def test_wrong_keys_never_disable_the_controls() -> None:
    c = controls()
    assert keys(c, "*5") == []
    assert keys(c, "66") == []
    assert keys(c, "6*") == []
    assert keys(c, "##*7") == []
    assert sent(keys(c, "*6"))[0]["type"] == "muteRequest"


def test_star5_then_star6_in_one_breath_still_works() -> None:
    c = controls()
    assert sent(keys(c, "*5*6")) == [
        {"type": "muteRequest", "id": "req-1", "data": {"audio": True}}
    ]


def test_star_star6_still_works() -> None:
    c = controls()
    assert len(sent(keys(c, "**6"))) == 1


def test_a_started_sequence_expires_after_the_inter_digit_timeout() -> None:
    c = controls(inter_digit_timeout=3.0)
    keys(c, "*", T0)
    assert c.get_timer() == T0 + 3.0
    c.handle_timer(T0 + 3.0)
    assert keys(c, "6", T0 + 3.5) == []  # a lone 6 is no command


def test_second_star6_while_waiting_for_the_response_is_absorbed() -> None:
    c = controls()
    keys(c, "*6")
    assert keys(c, "*6") == []
    assert c.pending is not None and c.pending.id == "req-1"


def test_failed_response_explains_and_rearms() -> None:
    c = controls()
    keys(c, "*6")
    actions = info(c, mute_response("req-1", True, "FAILED"))
    assert said(actions) == ["mute_failed", "unmuted"]
    assert len(sent(keys(c, "*6"))) == 1


def test_missing_mute_response_times_out_and_rearms() -> None:
    c = controls(mute_response_timeout=20.0)
    keys(c, "*6")
    assert c.get_timer() == T0 + 20.0
    c.handle_timer(T0 + 19.9)
    assert c.actions() == []
    c.handle_timer(T0 + 20.0)
    actions = c.actions()
    # Jigasi did nothing (mixer-mode regression): our bridge mutes and says so.
    assert actions == [ApplyLocalMute(True), Say(("muted",), interrupt=True)]
    assert c.pending is None
    assert sent(keys(c, "*6", T0 + 21)) == [
        {"type": "muteRequest", "id": "req-2", "data": {"audio": False}}
    ]


def test_missing_mute_response_without_local_mute_says_it_failed() -> None:
    c = controls(local_mute=False)
    keys(c, "*6")
    c.handle_timer(T0 + 20)
    assert said(c.actions()) == ["mute_failed", "unmuted"]
    assert not c.muted


def test_200_without_response_gives_up_after_the_grace() -> None:
    c = controls(response_grace=1.0)
    keys(c, "*6")
    c.info_answered("req-1", 200, T0 + 0.2)
    assert c.get_timer() == pytest.approx(T0 + 1.2)
    c.handle_timer(T0 + 1.2)
    assert said(c.actions()) == ["muted"]
    assert c.pending is None


def test_response_arriving_after_the_200_within_the_grace_is_used() -> None:
    c = controls()
    keys(c, "*6")
    c.info_answered("req-1", 200, T0 + 0.2)
    actions = info(c, mute_response("req-1", True), T0 + 0.5)
    assert said(actions) == ["muted"]
    c.handle_timer(T0 + 5)
    assert c.actions() == []


def test_error_response_to_our_info_gives_up_at_once() -> None:
    c = controls()
    keys(c, "*6")
    c.info_answered("req-1", 501, T0 + 0.1)
    assert said(c.actions()) == ["muted"]
    assert c.pending is None


def test_stale_mute_response_is_ignored() -> None:
    c = controls()
    keys(c, "*6")
    assert info(c, mute_response("someone-else", False)) == []
    assert c.pending is not None


# -- Jigasi's muteRequest ---------------------------------------------------------------------------


def test_jigasi_mute_request_is_answered_and_announced() -> None:
    c = controls()
    actions = info(c, {"type": "muteRequest", "data": {"audio": True}, "id": "j-uuid"})
    assert sent(actions) == [
        {"type": "muteResponse", "id": "j-uuid", "status": "OK", "data": {"audio": True}}
    ]
    assert ApplyLocalMute(True) in actions
    assert said(actions) == ["muted"]
    assert c.muted


def test_star6_after_a_remote_mute_asks_to_unmute() -> None:
    c = controls()
    info(c, {"type": "muteRequest", "data": {"audio": True}, "id": "j"})
    assert sent(keys(c, "*6"))[0]["data"] == {"audio": False}


# -- AV moderation and raise hand ----------------------------------------------------------------


def moderated(**kw) -> InCallControls:  # noqa: ANN003
    c = controls(muted=True, **kw)
    assert said(info(c, {"t": 8, "d": True})) == ["moderation_on"]
    return c


def test_unmute_refused_under_moderation_says_hand_is_raised() -> None:
    c = moderated()
    assert sent(keys(c, "*6"))[0]["data"] == {"audio": False}
    actions = info(c, mute_response("req-1", False, "FAILED"))
    assert said(actions) == ["cannot_unmute_hand_raised"]
    assert c.hand_raised and c.muted


def test_star9_raises_the_hand_through_a_refused_unmute() -> None:
    c = moderated()
    assert sent(keys(c, "*9")) == [{"type": "muteRequest", "id": "req-1", "data": {"audio": False}}]
    assert said(info(c, mute_response("req-1", False, "FAILED"))) == ["hand_raised"]
    assert said(keys(c, "*9")) == ["hand_raised"]  # already up: a reminder, nothing sent


def test_approval_then_unmute_lowers_the_hand() -> None:
    c = moderated()
    keys(c, "*9")
    info(c, mute_response("req-1", False, "FAILED"))
    assert said(info(c, {"t": 9})) == ["unmute_allowed"]
    keys(c, "*6")
    actions = info(c, mute_response("req-2", False))
    assert said(actions) == ["unmuted", "hand_lowered"]
    assert not c.hand_raised


def test_withdrawn_approval_is_announced() -> None:
    c = moderated()
    info(c, {"t": 9})
    assert said(info(c, {"t": 10})) == ["unmute_withdrawn"]
    assert not c.allowed_to_unmute


def test_moderation_off_is_announced_once() -> None:
    c = moderated()
    assert said(info(c, {"t": 8, "d": False})) == ["moderation_off"]
    assert info(c, {"t": 8, "d": False}) == []
    assert c.allowed_to_unmute


def test_star9_without_moderation_explains_it_is_not_needed() -> None:
    c = controls()
    actions = keys(c, "*9")
    assert actions == [Say(("hand_not_needed",), interrupt=True)]


def test_visitor_unmute_raises_hand_without_waiting_for_a_response() -> None:
    c = controls()
    assert said(info(c, {"t": 12, "d": True})) == ["visitor"]
    info(c, {"type": "muteRequest", "data": {"audio": True}, "id": "v"})
    actions = keys(c, "*6")
    assert sent(actions) == [{"type": "muteRequest", "id": "req-1", "data": {"audio": False}}]
    assert said(actions) == ["cannot_unmute_hand_raised"]
    assert c.pending is None  # Jigasi sends no muteResponse to a visitor (§4.4)
    assert said(info(c, {"t": 12, "d": False})) == ["promoted"]
    assert not c.hand_raised


# -- heartbeat, live, unknown, malformed ---------------------------------------------------------


def test_heartbeat_is_echoed_with_our_own_info() -> None:
    c = controls()
    assert sent(info(c, {"t": 11})) == [{"t": 11}]
    assert sent(info(c, {"t": 11})) == [{"t": 11}]


def test_heartbeat_is_echoed_while_in_the_lobby_and_while_leaving() -> None:
    c = controls()
    info(c, {"i": 0, "t": 3})
    assert sent(info(c, {"t": 11})) == [{"t": 11}]
    info(c, {"i": 1, "t": 7})
    assert sent(info(c, {"t": 11})) == [{"t": 11}]


@pytest.mark.parametrize(
    ("obj", "prompt"),
    [
        ({"t": 15, "d": False}, "meeting_not_live"),
        ({"t": 15, "d": True}, "meeting_live"),
        ({"t": 14, "d": True}, "meeting_not_live"),
    ],
)
def test_live_messages_are_announced(obj: dict, prompt: str) -> None:
    assert said(info(controls(), obj)) == [prompt]


def test_malformed_json_is_counted_and_changes_nothing() -> None:
    c = controls()
    c.receive_info("application/json", b"{not json", T0)
    c.receive_info("application/json", b'{"t":"11"}', T0)
    assert c.actions() == []
    assert c.remote_errors == 2
    assert len(sent(keys(c, "*6"))) == 1


def test_other_info_types_are_ignored() -> None:
    c = controls()
    c.receive_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", T0)
    assert c.actions() == []


def test_unknown_message_types_are_ignored() -> None:
    assert info(controls(), {"t": 99}) == []


# -- lobby ---------------------------------------------------------------------------------------


def test_lobby_wait_then_admitted() -> None:
    c = controls()
    assert said(info(c, {"i": 0, "t": 3})) == ["lobby_wait"]
    assert c.phase is Phase.LOBBY
    info(c, {"i": 1, "t": 5})
    assert said(info(c, {"i": 2, "t": 6})) == ["lobby_joined"]
    assert c.phase is Phase.CONFERENCE
    assert len(sent(keys(c, "*6"))) == 1


def test_password_typed_in_the_lobby_is_sent_as_t4() -> None:
    c = controls()
    info(c, {"i": 0, "t": 3})
    actions = keys(c, "12*0815#")  # '*' restarts the entry
    assert sent(actions) == [{"t": 4, "d": {"pwd": "0815"}}]
    assert said(actions) == ["connecting"]
    assert c.phase is Phase.CONFERENCE


def test_hash_alone_in_the_lobby_sends_nothing() -> None:
    c = controls()
    info(c, {"i": 0, "t": 3})
    assert keys(c, "#") == []
    assert c.phase is Phase.LOBBY


def test_rejected_says_so_then_hangs_up_when_the_prompt_ends() -> None:
    c = controls()
    info(c, {"i": 0, "t": 3})
    actions = info(c, {"i": 1, "t": 7})
    assert actions == [Say(("lobby_rejected",), interrupt=True)]
    assert c.phase is Phase.LEAVING
    assert keys(c, "*6") == []
    c.prompt_finished(T0 + 3)
    assert c.actions() == [HangUp("not admitted from the lobby")]
    assert c.phase is Phase.ENDED
    assert c.get_timer() is None


def test_rejected_hangs_up_at_the_leave_timeout_if_the_prompt_never_ends() -> None:
    c = controls(leave_timeout=15.0)
    info(c, {"i": 1, "t": 7})
    c.handle_timer(T0 + 15.0)
    assert [a for a in c.actions() if isinstance(a, HangUp)]


# -- time limit ----------------------------------------------------------------------------------


def test_time_warning_a_minute_before_the_deadline() -> None:
    c = controls()
    c.set_deadline(T0 + 4 * 3600, T0)
    assert c.get_timer() == T0 + 4 * 3600 - 60
    c.handle_timer(T0 + 4 * 3600 - 61)
    assert c.actions() == []
    c.handle_timer(T0 + 4 * 3600 - 60)
    assert c.actions() == [Say(("time_warning",))]
    assert c.get_timer() is None


def test_short_deadline_warns_at_once() -> None:
    c = controls()
    c.set_deadline(T0 + 30, T0)
    c.handle_timer(T0)
    assert said(c.actions()) == ["time_warning"]


def test_ended_absorbs_everything() -> None:
    c = controls()
    c.set_deadline(T0 + 100, T0)
    c.ended()
    assert keys(c, "*6") == []
    assert info(c, {"t": 11}) == []
    assert c.get_timer() is None


# -- key map -------------------------------------------------------------------------------------


def test_custom_keymap() -> None:
    c = controls(keymap={"#1": Control.MUTE_TOGGLE, "0": Control.HELP})
    assert keys(c, "*6") == []
    assert len(sent(keys(c, "#1"))) == 1
    assert said(keys(c, "0"))[0] == "help"


@pytest.mark.parametrize(
    "keymap",
    [{"*6": Control.HELP, "*66": Control.MUTE_TOGGLE}, {"x": Control.HELP}, {"": Control.HELP}],
)
def test_ambiguous_or_invalid_keymaps_are_refused(keymap: dict) -> None:
    with pytest.raises(ValueError):
        InCallSettings(keymap=keymap)


def test_help_says_help_and_the_state() -> None:
    assert said(keys(controls(muted=True), "*1")) == ["help", "muted"]


@given(st.text(alphabet="0123456789*#", max_size=40))
@settings(max_examples=200)
def test_any_digit_garbage_followed_by_star6_sends_exactly_one_request(garbage: str) -> None:
    matcher = KeyMatcher({"*6": Control.MUTE_TOGGLE}, 3.0)
    for d in garbage:
        matcher.feed(d, T0)
    assert matcher.feed("*", T0) is None
    assert matcher.feed("6", T0) is Control.MUTE_TOGGLE


def test_transition_table_names_only_existing_handlers() -> None:
    for phase, row in TRANSITIONS.items():
        for stimulus, (handler, nxt) in row.items():
            assert isinstance(stimulus, Stimulus)
            assert hasattr(InCallControls, "_on_" + handler), (phase, handler)
            assert nxt is None or isinstance(nxt, Phase)


def test_every_prompt_the_controls_can_say_is_in_the_catalogue() -> None:
    from dialbridge.prompts import KEYS

    assert not PROMPT_KEYS - KEYS


def test_settings_from_config_reads_keys_and_limits() -> None:
    from types import SimpleNamespace

    from dialbridge.calls.in_call import settings_from_config

    config = SimpleNamespace(
        ivr=SimpleNamespace(keys={"mute_toggle": "#6", "raise_hand": "", "help": "0"},
                            local_mute=False),
        limits=SimpleNamespace(warn_before_end_seconds=30),
    )  # fmt: skip
    s = settings_from_config(config)
    assert s.keymap == {"#6": Control.MUTE_TOGGLE, "0": Control.HELP}
    assert s.local_mute is False
    assert s.time_warning == 30.0
    assert settings_from_config(SimpleNamespace()) == InCallSettings()


# -- any sequence of inputs ------------------------------------------------------------------------

_INPUTS = st.one_of(
    st.tuples(st.just("digit"), st.sampled_from(list("0123456789*#"))),
    st.tuples(
        st.just("info"),
        st.sampled_from(
            [
                '{"t":11}',
                '{"t":8,"d":true}',
                '{"t":8,"d":false}',
                '{"t":9}',
                '{"t":10}',
                '{"t":12,"d":true}',
                '{"t":12,"d":false}',
                '{"t":15,"d":false}',
                '{"t":15,"d":true}',
                '{"i":0,"t":3}',
                '{"i":1,"t":5}',
                '{"i":2,"t":6}',
                '{"type":"muteRequest","data":{"audio":true},"id":"jig"}',
                '{"type":"muteResponse","id":"req-1","status":"OK","data":{"audio":true}}',
                '{"type":"muteResponse","id":"req-2","status":"FAILED","data":{"audio":false}}',
                '{"type":"muteResponse","id":"req-3","status":"OK","data":{"audio":false}}',
                "{garbage",
                '{"t":"11"}',
                '{"t":77}',
            ]
        ),
    ),
    st.tuples(st.just("answered"), st.sampled_from(["req-1", "req-2", "req-3", "req-4"])),
    st.tuples(st.just("time"), st.floats(min_value=0.0, max_value=30.0)),
    st.tuples(st.just("prompt_finished"), st.none()),
)


@given(st.lists(_INPUTS, max_size=40))
@settings(max_examples=300, deadline=None)
def test_no_input_sequence_breaks_the_controls(inputs: list) -> None:
    c = controls()
    now = T0
    for kind, value in inputs:
        if kind == "digit":
            c.receive_digit(value, now)
            c.actions()
            continue
        if kind == "info":
            c.receive_info("application/json", value, now)
            out = sent(c.actions())
            if value == '{"t":11}':
                assert out == [{"t": 11}]  # every heartbeat is echoed (§4.6)
            if '"muteRequest"' in value:
                assert [m["id"] for m in out if m.get("type") == "muteResponse"] == ["jig"]
        elif kind == "answered":
            c.info_answered(value, 200, now)
        elif kind == "time":
            now += value
            c.handle_timer(now)
        else:
            c.prompt_finished(now)
        c.actions()
        timer = c.get_timer()
        assert timer is None or timer > now  # nothing overdue is left behind
    # Whatever happened, once pending requests have timed out *6 asks Jigasi again.
    now += 60
    c.handle_timer(now)
    c.actions()
    if c.phase is Phase.LOBBY:
        c.receive_info("application/json", '{"i":9,"t":6}', now)
        c.actions()
    if c.phase is Phase.CONFERENCE:
        c.receive_digit("*", now)
        c.receive_digit("6", now)
        assert any(m.get("type") == "muteRequest" for m in sent(c.actions()))
    else:
        assert c.phase in (Phase.LEAVING, Phase.ENDED)
