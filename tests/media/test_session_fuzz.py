"""Whatever arrives on a leg's sockets, the session core never raises (remote errors only)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dialbridge.media.rtp import RtpPacket
from dialbridge.media.session import MediaSession, RtpParameters

PEER = ("127.0.0.1", 4000)
VALID = [
    RtpPacket(111, 1, 960, 7, b"\xf8\xff\xfe", extensions={1: b"\x9e"}).serialize(),
    RtpPacket(101, 2, 160, 7, b"\x05\x8a\x01\x40", marker=True).serialize(),
    RtpPacket(0, 3, 480, 7, bytes(160), csrc=[1, 2], padding_size=4).serialize(),
]


def fresh() -> MediaSession:
    return MediaSession(
        "fuzz",
        RtpParameters(
            "opus",
            111,
            telephone_event_pt=101,
            audio_level_id=1,
            remote_rtp=PEER,
            inband_dtmf=False,
        ),
        now=0.0,
        probation=1,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_random_datagrams_on_rtp_and_rtcp_ports_never_raise(datagrams):
    leg = fresh()
    for i, data in enumerate(datagrams):
        leg.receive_rtp(data, PEER, i * 0.02)
        leg.receive_rtcp(data, PEER, i * 0.02)
        leg.pull_audio(i * 0.02)
        leg.send_audio(None, i * 0.02)
        leg.handle_timers(i * 0.02)
    assert len(leg.outbox) == len(datagrams)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_mutated_valid_packets_never_raise(packet, flips):
    leg = fresh()
    data = bytearray(packet)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    for i in range(3):
        leg.receive_rtp(bytes(data), PEER, i * 0.02)
        leg.pull_audio(i * 0.02 + 0.01)
    leg.close(1.0)
    assert leg.closed
