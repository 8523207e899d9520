"""RTCP (RFC 3550 §6) wire format and the A.1/A.3/A.8 receiver statistics, RTT (§6.4.1)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialbridge.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpParseError,
    RtcpUnknown,
    RtpReceiverStats,
    RtpSenderStats,
    SdesChunk,
    SenderReport,
    SourceDescription,
    compact_ntp,
    ntp_from_unix,
    parse_rtcp,
    serialize_rtcp,
)
from dialbridge.media.rtp import is_rtcp


def test_sender_report_wire_layout():
    block = ReportBlock(0x22222222, 64, 3, 0x0001FFFF, 120, 0xAABBCCDD, 0x00010000)
    sr = SenderReport(0x11111111, 0xE1234567_89ABCDEF, 160000, 50, 8000, (block,))
    raw = serialize_rtcp([sr])
    assert raw[:4] == bytes([0x81, 200, 0, 12])  # V=2, RC=1, PT=200, length 12 words
    assert struct.unpack_from("!I", raw, 4)[0] == 0x11111111
    assert raw[28:32] == bytes.fromhex("22222222")
    assert raw[32:36] == bytes.fromhex("40000003")  # fraction 64/256, cumulative 3
    assert is_rtcp(raw)
    assert parse_rtcp(raw) == [sr]


def test_negative_cumulative_loss_is_a_signed_24_bit_field():
    block = ReportBlock(1, 0, -5, 10, 20, 0, 0)
    raw = serialize_rtcp([ReceiverReport(9, (block,))])
    assert raw[12:16] == bytes.fromhex("00fffffb")
    assert parse_rtcp(raw)[0].reports[0].cumulative_lost == -5


def test_compound_rr_sdes_bye_round_trip():
    packets = [
        ReceiverReport(0xCAFE, (ReportBlock(7, 0, 0, 100, 2, 0, 0),)),
        SourceDescription.with_cname(0xCAFE, "dialbridge@example.test"),
        Bye((0xCAFE, 0xBEEF), "call ended"),
    ]
    raw = serialize_rtcp(packets)
    assert len(raw) % 4 == 0
    back = parse_rtcp(raw)
    assert back == packets
    assert back[1].chunks[0].cname == "dialbridge@example.test"


def test_sdes_with_several_items_and_chunks():
    sdes = SourceDescription(
        (
            SdesChunk(1, ((1, b"a@b"), (2, b"Alice"), (6, b"tool"))),
            SdesChunk(2, ((1, b"xyz"),)),
        )
    )
    assert parse_rtcp(serialize_rtcp([sdes])) == [sdes]


def test_unknown_packet_types_are_kept_verbatim():
    # e.g. RTCP XR (207) or a transport-cc feedback (205) forwarded by the bridge
    xr = RtcpUnknown(207, 0, b"\x00\x00\x00\x01" + b"\x07\x00\x00\x00")
    raw = serialize_rtcp([ReceiverReport(1), xr])
    assert parse_rtcp(raw) == [ReceiverReport(1), xr]


def test_padding_on_the_last_packet_is_removed():
    body = struct.pack("!I", 5) + b"\x00\x00\x00\x04"
    raw = bytes([0xA0, 201, 0, 2]) + body
    assert parse_rtcp(raw) == [ReceiverReport(5)]


def test_bye_without_reason_and_empty_bye():
    for bye in (Bye((1,)), Bye(())):
        assert parse_rtcp(serialize_rtcp([bye])) == [bye]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc9\x00",
        bytes([0x40, 201, 0, 1]) + b"\x00" * 4,  # version 1
        bytes([0x81, 201, 0, 1]) + b"\x00" * 4,  # RR announces a block that is not there
        bytes([0x80, 201, 0, 9]) + b"\x00" * 4,  # length past the datagram
        bytes([0x80, 200, 0, 1]) + b"\x00" * 4,  # SR too short
        bytes([0x81, 202, 0, 2]) + b"\x00\x00\x00\x01\x01\x09abc",  # SDES item overruns
        bytes([0x81, 202, 0, 1]) + b"\x00\x00\x00\x01",  # SDES chunk not terminated
        bytes([0x82, 203, 0, 1]) + b"\x00\x00\x00\x01",  # BYE lists 2 sources, has 1
        bytes([0xA0, 201, 0, 1]) + b"\x00\x00\x00\x00",  # padding count 0
        bytes([0x80, 201, 0, 1]) + b"\x00" * 4 + b"\x80",  # trailing garbage
    ],
)
def test_malformed_rtcp_raises_a_remote_parse_error(data):
    with pytest.raises(RtcpParseError):
        parse_rtcp(data)


@given(st.binary(max_size=120))
def test_arbitrary_bytes_either_parse_or_raise_rtcp_parse_error(data):
    try:
        packets = parse_rtcp(data)
    except RtcpParseError:
        return
    # whatever parsed must rebuild and parse to the same values
    assert parse_rtcp(serialize_rtcp(packets)) == packets


def test_ntp_helpers():
    ntp = ntp_from_unix(0.5)
    assert ntp >> 32 == 2208988800 and ntp & 0xFFFFFFFF == 1 << 31
    assert compact_ntp(ntp) == ((2208988800 & 0xFFFF) << 16) | 0x8000


# -- A.1 / A.3 --------------------------------------------------------------------------------


def feed(stats, seqs, start_time=0.0, ts_step=160, rate=8000):
    ok = []
    for i, seq in enumerate(seqs):
        ok.append(stats.on_rtp(seq & 0xFFFF, (seq * ts_step) & 0xFFFFFFFF, start_time + i * 0.02))
    return ok


def test_new_source_needs_two_sequential_packets_before_it_is_valid():
    stats = RtpReceiverStats(ssrc=1, clock_rate=8000)
    assert feed(stats, [100, 101, 102]) == [False, True, True]
    assert stats.received == 2 and stats.expected == 2 and stats.cumulative_lost == 0


def test_probation_restarts_on_a_gap():
    stats = RtpReceiverStats(ssrc=1, clock_rate=8000)
    assert feed(stats, [100, 105, 106, 107]) == [False, False, True, True]


def test_loss_is_counted_and_reported_as_a_fraction_of_the_interval():
    stats = RtpReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    seqs = [s for s in range(1000, 1100) if s % 10 != 3]  # 10 % loss
    feed(stats, seqs)
    block = stats.report_block(now=2.0)
    assert (stats.expected, stats.received) == (100, 90)
    assert block.cumulative_lost == 10
    assert block.fraction_lost == (10 << 8) // 100  # 25/256, RFC 3550 A.3
    # next interval without loss reports 0 but keeps the cumulative figure
    feed(stats, range(1100, 1150), start_time=3.0)
    block2 = stats.report_block(now=4.0)
    assert block2.fraction_lost == 0 and block2.cumulative_lost == 10


def test_sequence_wrap_increments_cycles_in_the_extended_highest_sequence():
    stats = RtpReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    feed(stats, range(65530, 65546))
    block = stats.report_block(now=1.0)
    assert block.highest_sequence == (1 << 16) | 9
    assert block.cumulative_lost == 0 and stats.received == 16


def test_reordered_and_duplicate_packets_are_accepted_without_moving_max_seq():
    stats = RtpReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    assert all(feed(stats, [10, 12, 11, 13, 13]))
    assert stats.max_seq == 13
    # A.3: duplicates make received exceed expected, so cumulative loss can go negative.
    assert stats.cumulative_lost == -1
    assert stats.report_block(now=1.0).fraction_lost == 0


def test_a_wild_jump_is_ignored_until_two_sequential_packets_confirm_a_restart():
    stats = RtpReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    feed(stats, range(100, 110))
    assert stats.on_rtp(40000, 0, 1.0) is False  # one stray packet
    assert stats.max_seq == 109
    assert stats.on_rtp(110, 110 * 160, 1.02) is True
    assert stats.on_rtp(50000, 0, 1.04) is False
    assert stats.on_rtp(50001, 160, 1.06) is True  # sender restarted
    assert stats.restarts == 1 and stats.base_seq == 50001 and stats.received == 1


# -- A.8 jitter -------------------------------------------------------------------------------


def test_constant_transit_time_gives_zero_jitter():
    stats = RtpReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    feed(stats, range(0, 200))
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_alternating_arrival_delay_converges_to_the_a8_value():
    stats = RtpReceiverStats(ssrc=1, clock_rate=8000, probation=0)
    for i in range(2000):
        arrival = i * 0.02 + (0.005 if i % 2 else 0.0)  # |D| = 5 ms = 40 units every packet
        stats.on_rtp(i & 0xFFFF, (i * 160) & 0xFFFFFFFF, arrival)
    assert stats.jitter == pytest.approx(40.0, rel=1e-3)
    assert stats.jitter_seconds == pytest.approx(0.005, rel=1e-3)
    assert stats.report_block(now=41.0).jitter in (39, 40)


def test_jitter_survives_a_timestamp_wrap():
    stats = RtpReceiverStats(ssrc=1, clock_rate=48000, probation=0)
    ts0 = 0xFFFFFFFF - 960 * 10
    for i in range(40):
        stats.on_rtp(i, (ts0 + i * 960) & 0xFFFFFFFF, i * 0.02)
    assert stats.jitter < 1.0


# -- LSR / DLSR / RTT -------------------------------------------------------------------------


def test_round_trip_time_from_lsr_and_dlsr():
    # We send an SR at wallclock T; the peer holds it 0.25 s, then reports; it arrives at
    # T + 0.4 s, so the network round trip is 0.15 s.
    t = 1_700_000_000.0
    sender = RtpSenderStats(ssrc=0xAAAA, clock_rate=48000)
    for i in range(10):
        sender.on_rtp_sent(70, i * 960, now=i * 0.02)
    sr = sender.sender_report(wallclock=t, now=0.2)
    assert sr.packet_count == 10 and sr.octet_count == 700 and sr.rtp_timestamp == 9600

    receiver = RtpReceiverStats(ssrc=0xAAAA, clock_rate=48000, probation=0)
    receiver.on_rtp(1, 0, 100.0)
    receiver.on_sender_report(parse_rtcp(serialize_rtcp([sr]))[0], arrival=100.0)
    block = receiver.report_block(now=100.25)
    assert block.last_sr == compact_ntp(sr.ntp_timestamp)
    assert block.delay_since_last_sr == int(0.25 * 65536)

    rtt = sender.on_report_block(block, wallclock=t + 0.4)
    assert rtt == pytest.approx(0.15, abs=2 / 65536)


def test_no_rtt_without_an_sr_from_us():
    sender = RtpSenderStats(ssrc=1, clock_rate=8000)
    assert sender.on_report_block(ReportBlock(1, 12, 3, 100, 7), wallclock=1e9) is None
    assert sender.remote_fraction_lost == 12 and sender.remote_jitter == 7


def test_mutated_compound_packets_parse_or_raise_a_parse_error():
    import random

    rng = random.Random(2)
    seed = serialize_rtcp(
        [
            SenderReport(1, 2, 3, 4, 5, (ReportBlock(1, 2, 3, 4, 5, 6, 7),)),
            SourceDescription.with_cname(1, "x@y"),
            Bye((1, 2), "bye"),
        ]
    )
    for _ in range(20000):
        b = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.5:
                b[rng.randrange(len(b))] = rng.randrange(256)
            elif op < 0.75:
                del b[rng.randrange(len(b))]
            else:
                b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        try:
            packets = parse_rtcp(bytes(b))
        except RtcpParseError:
            continue
        assert parse_rtcp(serialize_rtcp(packets)) == packets
