"""RTP packet parsing and building (RFC 3550 §5.1, RFC 8285)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialbridge.media.rtp import (
    RtpBuildError,
    RtpPacket,
    RtpParseError,
    is_rtcp,
    seq_diff,
    seq_newer,
    ts_diff,
    ts_newer,
)


def test_fixed_header_fields_are_parsed():
    data = bytes.fromhex("80 e0 12 34 00 00 03 c0 de ad be ef") + b"\x01\x02"
    p = RtpPacket.parse(data)
    assert (p.payload_type, p.marker, p.sequence_number, p.timestamp, p.ssrc) == (
        96,
        True,
        0x1234,
        960,
        0xDEADBEEF,
    )
    assert p.payload == b"\x01\x02" and p.csrc == [] and p.extensions == {}
    assert p.serialize() == data


def test_rfc6464_one_byte_extension_matches_the_known_layout():
    # stack-notes §2.3: aiortc encodes V=1, level 0x23 at id 1 as "BEDE 0001 10 A3 0000".
    p = RtpPacket(111, 1, 2, 3, b"x", extensions={1: b"\xa3"})
    raw = p.serialize()
    assert raw[12:20] == bytes.fromhex("bede0001 10a30000")
    assert raw[0] & 0x10
    assert RtpPacket.parse(raw).extensions == {1: b"\xa3"}


def test_csrc_list_and_padding_round_trip():
    p = RtpPacket(0, 65535, 0xFFFFFFFF, 7, b"abc", csrc=[1, 2, 0xFFFFFFFF], padding_size=5)
    raw = p.serialize()
    assert raw[0] == 0x80 | 0x20 | 3
    assert raw[-1] == 5 and raw[-5:-1] == b"\x00" * 4
    back = RtpPacket.parse(raw)
    assert back == p


def test_one_byte_parser_skips_padding_bytes_and_stops_at_id_15():
    # RFC 8285 §4.2: a 0 byte between elements is padding; id 15 ends the block.
    body = bytes([0x10, 0xAA, 0x00, 0x00, 0x21, 0xBB, 0xCC, 0xF0, 0x31, 0x00, 0x00, 0x00])
    raw = bytes.fromhex("90000001 00000002 00000003") + struct.pack("!HH", 0xBEDE, 3) + body
    p = RtpPacket.parse(raw + b"pay")
    assert p.extensions == {1: b"\xaa", 2: b"\xbb\xcc"}
    assert p.payload == b"pay"


def test_one_byte_parser_stops_at_an_id_0_byte_that_is_not_padding():
    body = bytes([0x10, 0xAA, 0x02, 0x41, 0x42, 0x43, 0x00, 0x00])
    raw = bytes.fromhex("90000001 00000002 00000003") + struct.pack("!HH", 0xBEDE, 2) + body
    assert RtpPacket.parse(raw).extensions == {1: b"\xaa"}


def test_two_byte_form_is_used_for_large_ids_long_or_empty_elements():
    for ext in ({15: b"a"}, {1: b"x" * 17}, {3: b""}, {200: b"hello"}):
        p = RtpPacket(96, 1, 2, 3, b"p", extensions=ext)
        raw = p.serialize()
        profile = struct.unpack_from("!H", raw, 12)[0]
        assert profile & 0xFFF0 == 0x1000
        assert RtpPacket.parse(raw).extensions == ext


def test_two_byte_appbits_are_kept():
    p = RtpPacket(96, 1, 2, 3, b"p", extensions={20: b"z"}, extension_appbits=0x5)
    back = RtpPacket.parse(p.serialize())
    assert back.extension_appbits == 5 and back.extensions == {20: b"z"}


def test_unknown_extension_profile_is_kept_verbatim_for_relaying():
    raw = bytes.fromhex("90000001 00000002 00000003") + struct.pack("!HH", 0xABCD, 1) + b"wxyz"
    p = RtpPacket.parse(raw + b"P")
    assert p.extensions == {} and p.unknown_extension == (0xABCD, b"wxyz")
    assert p.serialize() == raw + b"P"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00\x00",
        bytes.fromhex("40000001 00000002 00000003"),  # version 1
        bytes.fromhex("8f000001 00000002 00000003"),  # 15 CSRCs announced, none present
        bytes.fromhex("90000001 00000002 00000003 bede0005 10aa0000"),  # extension too long
        bytes.fromhex("90000001 00000002 00000003 bede"),  # truncated extension header
        bytes.fromhex("a0000001 00000002 00000003 00"),  # padding count 0
        bytes.fromhex("a0000001 00000002 00000003 0000ff"),  # padding longer than packet
        bytes.fromhex("90000001 00000002 00000003 bede0001 13aa0000"),  # element overruns block
        bytes.fromhex("90000001 00000002 00000003 10000001 05050000"),  # two-byte overrun
    ],
)
def test_malformed_packets_raise_a_remote_parse_error(data):
    with pytest.raises(RtpParseError):
        RtpPacket.parse(data)


def test_parse_error_is_a_value_error():
    assert issubclass(RtpParseError, ValueError)


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(96, 1, 2, 3, csrc=list(range(16))),
        RtpPacket(200, 1, 2, 3),
        RtpPacket(96, 1, 2, 3, extensions={0: b"a"}),
        RtpPacket(96, 1, 2, 3, extensions={300: b"a"}),
        RtpPacket(96, 1, 2, 3, padding_size=256),
    ],
)
def test_unrepresentable_packets_raise_a_local_build_error(packet):
    with pytest.raises(RtpBuildError):
        packet.serialize()


ext_dicts = st.dictionaries(st.integers(1, 255), st.binary(max_size=40), max_size=5)


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    extensions=ext_dicts,
    padding=st.integers(0, 255),
)
def test_serialize_then_parse_is_identity(
    pt, seq, ts, ssrc, payload, marker, csrc, extensions, padding
):
    p = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrc, extensions, padding)
    assert RtpPacket.parse(p.serialize()) == p


@given(st.binary(max_size=120))
def test_arbitrary_bytes_either_parse_or_raise_rtp_parse_error(data):
    try:
        p = RtpPacket.parse(data)
    except RtpParseError:
        return
    # Whatever parsed must rebuild into a packet that parses to the same value.
    assert RtpPacket.parse(p.serialize()) == p


def test_sequence_numbers_compare_across_the_16_bit_wrap():
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_newer(3, 65530) and not seq_newer(65530, 3)
    assert seq_diff(100, 100) == 0 and not seq_newer(100, 100)
    assert seq_diff(32767, 0) == 32767 and seq_diff(32768, 0) == -32768


def test_timestamps_compare_across_the_32_bit_wrap():
    assert ts_diff(959, 0xFFFFFFFF - 0) == 960
    assert ts_diff(0, 0xFFFFFC40) == 960
    assert ts_newer(100, 0xFFFFFF00) and not ts_newer(0xFFFFFF00, 100)


def test_rtcp_is_told_apart_from_rtp_by_packet_type():
    # RFC 5761 §4: SR=200, RR=201 (and all of 192..223) are RTCP; RTP PT 0 / 111 / 101 are not.
    assert is_rtcp(bytes([0x80, 200, 0, 6]))
    assert is_rtcp(bytes([0x81, 201, 0, 7]))
    for pt in (0, 8, 96, 101, 111, 0x80 | 111):
        assert not is_rtcp(bytes([0x80, pt, 0, 0]))
    assert not is_rtcp(b"\x80")


def mutate(data: bytes, rng) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.5 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.75 and b:
            del b[rng.randrange(len(b))]
        else:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
    return bytes(b)


def test_mutated_packets_parse_or_raise_a_parse_error():
    import random

    rng = random.Random(1)
    seeds = [
        RtpPacket(111, 1, 2, 3, b"abcd", True, [1, 2], {1: b"\x80", 3: b"xyz"}, 3).serialize(),
        RtpPacket(96, 1, 2, 3, b"p", extensions={20: b"hello", 1: b""}).serialize(),
    ]
    for _ in range(20000):
        data = mutate(rng.choice(seeds), rng)
        try:
            p = RtpPacket.parse(data)
        except RtpParseError:
            continue
        assert RtpPacket.parse(p.serialize()) == p
