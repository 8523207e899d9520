"""RFC 4733 telephone-events (payload, receiver, sender) and SIP INFO DTMF bodies."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialbridge.media.dtmf import (
    DigitEvent,
    DigitStarted,
    DtmfParseError,
    Rfc4733Receiver,
    Rfc4733Sender,
    TelephoneEvent,
    build_dtmf_relay,
    digit_to_event,
    event_to_digit,
    parse_application_dtmf,
    parse_dtmf_relay,
)
from dialbridge.media.rtp import RtpPacket

SIPP_PCAPS = Path("/usr/share/sip-tester")


# -- payload (RFC 4733 §2.3) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # vectors from the DTMF captures shipped with SIPp (Debian sip-tester)
        ("010a0000", TelephoneEvent(1, False, 10, 0)),
        ("010a0140", TelephoneEvent(1, False, 10, 320)),
        ("018a08c0", TelephoneEvent(1, True, 10, 2240)),
        ("0b8a08c0", TelephoneEvent(11, True, 10, 2240)),
        # event 9, E=1, R=0, volume 63 (-63 dBm0), duration 0xffff
        ("09bfffff", TelephoneEvent(9, True, 63, 0xFFFF)),
        # the reserved R bit is ignored on receipt (§2.3.3)
        ("05ca0190", TelephoneEvent(5, True, 10, 400)),
    ],
)
def test_payload_vectors(payload, expected):
    assert TelephoneEvent.parse(bytes.fromhex(payload)) == expected
    if payload != "05ca0190":
        assert expected.serialize().hex() == payload


def test_event_codes_follow_table_3():
    assert [digit_to_event(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert event_to_digit(10) == "*" and event_to_digit(11) == "#" and event_to_digit(15) == "D"
    assert event_to_digit(16) is None  # flash is not a digit
    with pytest.raises(ValueError):
        digit_to_event("E")


def test_short_payload_is_a_remote_error():
    with pytest.raises(DtmfParseError):
        TelephoneEvent.parse(b"\x01\x0a\x00")


# -- receiver ---------------------------------------------------------------------------------


def events_of(kind, events):
    return [e for e in events if isinstance(e, kind)]


def te_packet(ts, payload, marker=False, seq=0):
    return RtpPacket(101, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x1234, payload, marker)


def feed(rx, packets, t0=0.0, step=0.02):
    out = []
    for i, (ts, payload, marker) in enumerate(packets):
        out += rx.receive(te_packet(ts, payload, marker, i), t0 + i * step)
    return out


def digit_packets(event, ts, durations, end_repeats=3, volume=10):
    pk = [
        (ts, TelephoneEvent(event, False, volume, d).serialize(), i == 0)
        for i, d in enumerate(durations)
    ]
    final = TelephoneEvent(event, True, volume, durations[-1] + 160).serialize()
    return pk + [(ts, final, False)] * end_repeats


def read_pcap_rtp(path: Path) -> list[RtpPacket]:
    data = path.read_bytes()
    (magic,) = struct.unpack_from("<I", data, 0)
    order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    link = struct.unpack_from(order + "I", data, 20)[0]
    pos, packets = 24, []
    while pos + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from(order + "IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        off = {1: 14, 113: 16}.get(link, 0)
        ihl = (frame[off] & 0x0F) * 4
        packets.append(RtpPacket.parse(frame[off + ihl + 8 :]))
    return packets


@pytest.mark.skipif(not SIPP_PCAPS.is_dir(), reason="Debian sip-tester pcaps not installed")
@pytest.mark.parametrize(("name", "digit"), [("1", "1"), ("pound", "#"), ("star", "*"), ("0", "0")])
def test_sipp_capture_gives_exactly_one_digit(name, digit):
    rx = Rfc4733Receiver(report_start=True)
    out = []
    for i, p in enumerate(read_pcap_rtp(SIPP_PCAPS / f"dtmf_2833_{name}.pcap")):
        out += rx.receive(p, now=i * 0.02)
    assert out == [DigitStarted(digit, "rfc4733"), DigitEvent(digit, 280, "rfc4733", "end")]
    assert rx.get_timer() is None


def test_three_end_packets_give_one_digit():
    rx = Rfc4733Receiver(report_start=True)
    out = feed(rx, digit_packets(5, 1000, [160, 320, 480]))
    assert events_of(DigitEvent, out) == [DigitEvent("5", 80, "rfc4733", "end")]
    assert events_of(DigitStarted, out) == [DigitStarted("5", "rfc4733")]


def test_same_digit_twice_is_two_events_told_apart_by_timestamp():
    rx = Rfc4733Receiver()
    out = feed(rx, digit_packets(7, 1000, [160, 320]) + digit_packets(7, 2600, [160, 320]))
    assert [e.digit for e in events_of(DigitEvent, out)] == ["7", "7"]


def test_lost_start_packets_still_give_the_digit():
    rx = Rfc4733Receiver()
    pk = digit_packets(3, 5000, [160, 320, 480])[2:]  # first two (with the marker) lost
    out = feed(rx, pk)
    assert [e.digit for e in events_of(DigitEvent, out)] == ["3"]


def test_all_end_packets_lost_ends_the_digit_on_timeout():
    rx = Rfc4733Receiver(end_timeout=0.3)
    out = feed(rx, digit_packets(9, 800, [160, 320, 480, 640], end_repeats=0))
    assert events_of(DigitEvent, out) == []
    deadline = rx.get_timer()
    assert deadline == pytest.approx(0.06 + 0.3)
    assert rx.handle_timer(deadline - 0.01) == []
    assert rx.handle_timer(deadline) == [DigitEvent("9", 80, "rfc4733", "timeout")]
    assert rx.get_timer() is None
    # late end packets of that event do not produce a second digit
    late = TelephoneEvent(9, True, 10, 800).serialize()
    assert rx.receive(te_packet(800, late), deadline + 0.01) == []


def test_a_new_event_ends_the_previous_one_whose_end_was_lost():
    rx = Rfc4733Receiver()
    out = feed(rx, digit_packets(1, 100, [160, 320], end_repeats=0) + digit_packets(2, 900, [160]))
    assert [(e.digit, e.ended_by) for e in events_of(DigitEvent, out)] == [
        ("1", "next"),
        ("2", "end"),
    ]


def test_reordered_updates_keep_the_longest_duration():
    rx = Rfc4733Receiver()
    ev = lambda d, end=False: TelephoneEvent(4, end, 10, d).serialize()  # noqa: E731
    out = feed(
        rx,
        [(0, ev(160), True), (0, ev(480), False), (0, ev(320), False), (0, ev(480, True), False)],
    )
    assert events_of(DigitEvent, out)[0].duration_ms == 60


def test_stale_packet_of_an_older_event_is_ignored():
    rx = Rfc4733Receiver()
    feed(rx, digit_packets(1, 1000, [160]))
    feed(rx, [(3000, TelephoneEvent(2, False, 10, 160).serialize(), True)], t0=1.0)
    assert rx.receive(te_packet(500, TelephoneEvent(8, False, 10, 160).serialize()), 1.1) == []


def test_long_event_segments_are_joined_into_one_digit():
    # §2.5.1.3: after 0xFFFF units (8.2 s at 8 kHz) the sender starts a new segment whose
    # timestamp is the old timestamp plus the old duration, without the marker bit.
    rx = Rfc4733Receiver(report_start=True)
    ts0 = 0xFFFF0000
    first = [
        (ts0, TelephoneEvent(0, False, 10, d).serialize(), d == 160)
        for d in range(160, 0xFFFF, 8000)
    ]
    first.append((ts0, TelephoneEvent(0, False, 10, 0xFFFF).serialize(), False))
    ts1 = (ts0 + 0xFFFF) & 0xFFFFFFFF
    second = [(ts1, TelephoneEvent(0, False, 10, 800).serialize(), False)]
    second += [(ts1, TelephoneEvent(0, True, 10, 1600).serialize(), False)] * 3
    out = feed(rx, first + second)
    assert events_of(DigitStarted, out) == [DigitStarted("0", "rfc4733")]
    assert events_of(DigitEvent, out) == [
        DigitEvent("0", round((0xFFFF + 1600) / 8), "rfc4733", "end")
    ]


def test_digit_started_is_only_reported_on_request():
    plain = feed(Rfc4733Receiver(), digit_packets(5, 0, [160, 320]))
    assert plain == [DigitEvent("5", 60, "rfc4733", "end")]
    assert plain[0].duration == pytest.approx(0.06)


def test_non_dtmf_events_produce_no_digits():
    rx = Rfc4733Receiver()
    assert feed(rx, digit_packets(16, 0, [160])) == []  # hook flash


# -- sender -----------------------------------------------------------------------------------


def run_sender(tx, ticks, ts0=1000, step=160):
    out = []
    for i in range(ticks):
        out.append(tx.next_packet((ts0 + i * step) & 0xFFFFFFFF))
    return out


def test_sender_packet_sequence_for_one_digit():
    tx = Rfc4733Sender()
    tx.send("5", duration_ms=100)
    pk = run_sender(tx, 12)
    sent = [p for p in pk if p is not None]
    events = [TelephoneEvent.parse(p.payload) for p in sent]
    assert len(sent) == 5 + 3  # 100 ms in 20 ms packets, then the end three times
    assert [p.marker for p in sent] == [True] + [False] * 7
    assert {p.timestamp for p in sent} == {1000}
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert [e.end for e in events] == [False] * 5 + [True] * 3
    assert {e.event for e in events} == {5} and {e.volume for e in events} == {10}
    assert not tx.busy and pk[-1] is None


def test_sender_separates_digits_with_audio_and_new_timestamps():
    tx = Rfc4733Sender()
    tx.send("12", duration_ms=60, gap_ms=40)
    pk = run_sender(tx, 20)
    firsts = [(i, p) for i, p in enumerate(pk) if p is not None and p.marker]
    assert len(firsts) == 2
    (i1, p1), (i2, p2) = firsts
    assert p1.timestamp == 1000 and p2.timestamp == 1000 + i2 * 160
    assert pk[i2 - 1] is None and pk[i2 - 2] is None  # 40 ms of audio between the digits


def test_sender_output_is_understood_by_the_receiver():
    tx, rx = Rfc4733Sender(), Rfc4733Receiver()
    tx.send("*0#", duration_ms=120)
    digits = []
    for i in range(60):
        p = tx.next_packet(i * 160)
        if p is not None:
            digits += rx.receive(te_packet(p.timestamp, p.payload, p.marker, i), i * 0.02)
    assert [(d.digit, d.duration_ms) for d in digits] == [("*", 120), ("0", 120), ("#", 120)]


def test_sender_splits_a_long_event_into_segments_the_receiver_joins():
    tx, rx = Rfc4733Sender(clock_rate=48000, frame_samples=960), Rfc4733Receiver(clock_rate=48000)
    tx.send("9", duration_ms=3000)  # 144000 units > 0xFFFF at 48 kHz
    out, timestamps = [], set()
    for i in range(200):
        p = tx.next_packet(i * 960)
        if p is not None:
            timestamps.add(p.timestamp)
            assert TelephoneEvent.parse(p.payload).duration <= 0xFFFF
            out += rx.receive(te_packet(p.timestamp, p.payload, p.marker, i), i * 0.02)
    assert len(timestamps) == 3
    assert events_of(DigitEvent, out) == [DigitEvent("9", 3000, "rfc4733", "end")]


@settings(max_examples=150, deadline=None)
@given(
    digits=st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=6),
    duration_ms=st.integers(40, 400),
    lost=st.sets(st.integers(0, 200), max_size=40),
    swaps=st.sets(st.integers(0, 199), max_size=10),
)
def test_each_digit_is_reported_once_despite_loss_and_reordering(digits, duration_ms, lost, swaps):
    tx = Rfc4733Sender()
    tx.send(digits, duration_ms=duration_ms, gap_ms=60)
    wire = []
    for i in range(400):
        p = tx.next_packet(i * 160)
        if p is not None:
            wire.append((i, p))
    for k in sorted(swaps):  # swap neighbours: mild reordering
        if k + 1 < len(wire):
            wire[k], wire[k + 1] = wire[k + 1], wire[k]
    rx = Rfc4733Receiver()
    got, survived = [], set()
    for n, (i, p) in enumerate(wire):
        if n in lost:
            continue
        survived.add(p.timestamp)
        got += rx.receive(te_packet(p.timestamp, p.payload, p.marker, n), i * 0.02)
    got += rx.handle_timer(1e9)
    # every digit with at least one surviving packet is reported exactly once, in order
    starts = sorted({p.timestamp for _, p in wire})
    expected = [d for d, ts in zip(digits, starts, strict=True) if ts in survived]
    assert [e.digit for e in got] == expected


# -- SIP INFO ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "digit", "duration"),
    [
        ("Signal=5\r\nDuration=160\r\n", "5", 160),
        (b"Signal=#\r\nDuration=250", "#", 250),
        ("signal= *\nduration = 100\n", "*", 100),
        ("Signal=11\r\nDuration=160\r\n", "#", 160),
        ("Signal=a\r\n", "A", 0),
    ],
)
def test_dtmf_relay_bodies(body, digit, duration):
    assert parse_dtmf_relay(body) == DigitEvent(digit, duration, "info")


@pytest.mark.parametrize(
    "body", ["", "Duration=160", "Signal=55\r\n", "Signal=x", "Signal=1\r\nDuration=abc"]
)
def test_bad_dtmf_relay_bodies_are_remote_errors(body):
    with pytest.raises(DtmfParseError):
        parse_dtmf_relay(body)


def test_application_dtmf_body():
    assert parse_application_dtmf(b"7\r\n") == DigitEvent("7", 0, "info")
    assert parse_application_dtmf("Signal=3\r\nDuration=90") == DigitEvent("3", 90, "info")
    with pytest.raises(DtmfParseError):
        parse_application_dtmf("77")


def test_build_dtmf_relay_matches_what_jigasi_sends():
    # jigasi-protocol.md §6.1: SIP_INFO_DTMF sends "Signal=<d>\r\nDuration=<ms>\r\n"
    assert build_dtmf_relay("5", 160) == "Signal=5\r\nDuration=160\r\n"
    assert parse_dtmf_relay(build_dtmf_relay("D", 90)) == DigitEvent("D", 90, "info")


@given(st.binary(max_size=64))
def test_arbitrary_info_bodies_parse_or_raise_dtmf_parse_error(body):
    for parse in (parse_dtmf_relay, parse_application_dtmf):
        try:
            event = parse(body)
        except DtmfParseError:
            continue
        assert event.digit in "0123456789*#ABCD" and event.duration_ms >= 0


@given(st.binary(max_size=8))
def test_arbitrary_telephone_event_payloads_parse_or_raise(payload):
    try:
        ev = TelephoneEvent.parse(payload)
    except DtmfParseError:
        assert len(payload) < 4
        return
    assert TelephoneEvent.parse(ev.serialize()) == ev
