"""SDP parse/build (RFC 4566) and offer/answer (RFC 3264), pinned against Jigasi's real SDP."""

from __future__ import annotations

import pytest

from dialbridge.sip.sdp import (
    CSRC_AUDIO_LEVEL,
    OPUS,
    PCMA,
    PCMU,
    SSRC_AUDIO_LEVEL,
    Connection,
    Extmap,
    LocalMedia,
    MediaDescription,
    OfferAnswerError,
    Origin,
    Rtcp,
    RtpMap,
    SdpParseError,
    SessionDescription,
    answer_direction,
    create_answer,
    create_offer,
    negotiate,
    parse_sdp,
    with_version,
)

# docs/jigasi-protocol.md §1.5: Jigasi's answer (translator mode, Opus-only config) to our offer
# of PT 111 Opus, PT 101 telephone-event and ssrc-audio-level at id 1.
JIGASI_ANSWER = (
    "v=0\r\n"
    "o=jigasi-jitsi.org 0 0 IN IP4 10.0.0.5\r\n"
    "s=-\r\n"
    "c=IN IP4 10.0.0.5\r\n"
    "t=0 0\r\n"
    "m=audio 10004 RTP/AVP 111 101\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=fmtp:111 usedtx=1\r\n"
    "a=ptime:20\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
)

# docs/jigasi-protocol.md §1.5: Jigasi's own offer in mixer mode (docker-jitsi-meet #42):
# m=audio 20004 RTP/AVP 96 97 9 0 8 98 101, opus + usedtx + ptime, AMR-WB, G722, PCMU, PCMA,
# iLBC, telephone-event, extmap:1 csrc-audio-level, extmap:2 ssrc-audio-level, rtcp-xr.
# A video stream is added to check that it is refused with port 0.
JIGASI_MIXER_OFFER = (
    "v=0\r\n"
    "o=jigasi-jitsi.org 0 0 IN IP4 172.17.0.5\r\n"
    "s=-\r\n"
    "c=IN IP4 172.17.0.5\r\n"
    "t=0 0\r\n"
    "m=audio 20004 RTP/AVP 96 97 9 0 8 98 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 usedtx=1\r\n"
    "a=ptime:20\r\n"
    "a=rtpmap:97 AMR-WB/16000\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:98 iLBC/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:csrc-audio-level\r\n"
    "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=rtcp-xr:voip-metrics\r\n"
    "m=video 20006 RTP/AVP 100\r\n"
    "a=rtpmap:100 VP8/90000\r\n"
)

# docs/jigasi-protocol.md §1.5, translator mode extmaps.
JIGASI_TRANSLATOR_OFFER = (
    "v=0\r\n"
    "o=jigasi-jitsi.org 0 0 IN IP4 10.0.0.5\r\n"
    "s=-\r\n"
    "c=IN IP4 10.0.0.5\r\n"
    "t=0 0\r\n"
    "m=audio 10008 RTP/AVP 96 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 usedtx=1\r\n"
    "a=ptime:20\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level\r\n"
)

JIGASI_SIDE = LocalMedia(address="127.0.0.1", port=40000, codecs=(OPUS,))
PSTN_SIDE = LocalMedia(address="127.0.0.1", port=40002, codecs=(PCMA, PCMU), extmap_uris=())


def test_jigasi_answer_parses_to_typed_fields():
    sdp = parse_sdp(JIGASI_ANSWER.encode())
    assert sdp.origin == Origin("jigasi-jitsi.org", 0, 0, "IN", "IP4", "10.0.0.5")
    assert sdp.connection == Connection("10.0.0.5")
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        10004,
        "RTP/AVP",
        ["111", "101"],
    )
    assert audio.rtpmaps[111] == RtpMap(111, "opus", 48000, 2)
    assert audio.rtpmaps[101] == RtpMap(101, "telephone-event", 8000)
    assert audio.fmtps == {"111": "usedtx=1"}
    assert audio.ptime == 20
    assert audio.extmaps == [Extmap(1, SSRC_AUDIO_LEVEL)]
    assert audio.direction is None and sdp.media_direction(audio) == "sendrecv"


def test_our_offer_carries_opus_telephone_event_and_audio_level_at_id_1():
    offer = create_offer(JIGASI_SIDE)
    text = offer.to_bytes().decode()
    assert "m=audio 40000 RTP/AVP 111 101\r\n" in text
    assert "a=rtpmap:111 opus/48000/2\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\n" in text
    assert "a=fmtp:101 0-16\r\n" in text
    assert "a=ptime:20\r\n" in text
    assert "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" in text
    assert "c=IN IP4 127.0.0.1\r\n" in text
    assert text.startswith("v=0\r\no=dialbridge 0 0 IN IP4 127.0.0.1\r\ns=-\r\n")
    assert "sendrecv" not in text  # default direction is left implicit, as Jigasi does


def test_negotiating_our_offer_with_jigasis_answer():
    offer = create_offer(JIGASI_SIDE)
    answer = parse_sdp(JIGASI_ANSWER)
    audio = negotiate(offer, answer, local_is_offerer=True)
    assert (audio.remote_address, audio.remote_port, audio.remote_rtcp_port) == (
        "10.0.0.5",
        10004,
        10005,
    )
    assert audio.payload_type == 111
    assert audio.codec == RtpMap(111, "opus", 48000, 2)
    assert audio.fmtp == "usedtx=1"
    assert audio.telephone_event_payload_type == 101
    assert audio.extmap_ids == {SSRC_AUDIO_LEVEL: 1}
    assert audio.direction == "sendrecv" and audio.sends and audio.receives
    assert audio.remote_ptime == 20


def test_answer_to_jigasi_mixer_offer_keeps_offerer_numbers_and_refuses_video():
    offer = parse_sdp(JIGASI_MIXER_OFFER)
    answer = create_answer(offer, JIGASI_SIDE)
    audio, video = answer.media
    assert audio.formats == ["96", "101"]
    assert audio.rtpmaps[96] == RtpMap(96, "opus", 48000, 2)
    assert audio.rtpmaps[101] == RtpMap(101, "telephone-event", 8000)
    # The peer's id for the extension we want; csrc-audio-level is not wanted, so not answered.
    assert audio.extmaps == [Extmap(2, SSRC_AUDIO_LEVEL)]
    assert (video.media, video.port, video.formats) == ("video", 0, ["100"])
    text = answer.to_bytes().decode()
    assert "m=video 0 RTP/AVP 100\r\n" in text
    assert "rtcp-xr" not in text
    negotiated = negotiate(offer, answer, local_is_offerer=False)
    assert (negotiated.remote_address, negotiated.remote_port) == ("172.17.0.5", 20004)
    assert negotiated.payload_type == 96
    assert negotiated.extmap_ids == {SSRC_AUDIO_LEVEL: 2}


def test_answer_orders_codecs_by_our_preference_with_telephone_event_last():
    offer = parse_sdp(JIGASI_MIXER_OFFER)
    answer = create_answer(offer, PSTN_SIDE)
    assert answer.media[0].formats == ["8", "0", "101"]
    assert answer.media[0].extmaps == []
    assert negotiate(offer, answer, local_is_offerer=False).codec.encoding == "PCMA"


def test_answer_to_translator_offer_reverses_extmap_direction():
    offer = parse_sdp(JIGASI_TRANSLATOR_OFFER)
    local = LocalMedia(
        address="127.0.0.1", port=40000, extmap_uris=(SSRC_AUDIO_LEVEL, CSRC_AUDIO_LEVEL)
    )
    answer = create_answer(offer, local)
    assert answer.media[0].extmaps == [
        Extmap(1, SSRC_AUDIO_LEVEL),
        Extmap(2, CSRC_AUDIO_LEVEL, "sendonly"),
    ]
    assert "a=extmap:2/sendonly urn:ietf:params:rtp-hdrext:csrc-audio-level" in (
        answer.to_bytes().decode()
    )


@pytest.mark.parametrize(
    ("offered", "local", "answered"),
    [
        ("sendrecv", "sendrecv", "sendrecv"),
        ("sendonly", "sendrecv", "recvonly"),
        ("recvonly", "sendrecv", "sendonly"),
        ("inactive", "sendrecv", "inactive"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendrecv", "sendonly", "sendonly"),
        ("sendonly", "sendonly", "inactive"),
        ("recvonly", "recvonly", "inactive"),
    ],
)
def test_direction_negotiation_follows_rfc3264_section_6_1(offered, local, answered):
    assert answer_direction(offered, local) == answered


def test_hold_offer_with_session_level_sendonly_is_answered_recvonly():
    held = JIGASI_ANSWER.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    offer = parse_sdp(held)
    assert offer.direction == "sendonly"
    answer = create_answer(offer, JIGASI_SIDE)
    assert answer.media[0].direction == "recvonly"
    negotiated = negotiate(offer, answer, local_is_offerer=False)
    assert negotiated.receives and not negotiated.sends


def test_offerless_invite_offer_in_200_answer_in_ack():
    # We got an INVITE without SDP: our offer goes in the 200, the peer's answer in the ACK.
    our_offer = create_offer(JIGASI_SIDE)
    their_answer = create_answer(
        parse_sdp(our_offer.to_bytes()),
        LocalMedia(address="10.0.0.9", port=10010, username="jigasi-jitsi.org"),
    )
    wire_answer = parse_sdp(their_answer.to_bytes())
    ours = negotiate(our_offer, wire_answer, local_is_offerer=True)
    assert (ours.remote_address, ours.remote_port, ours.payload_type) == ("10.0.0.9", 10010, 111)
    theirs = negotiate(parse_sdp(our_offer.to_bytes()), wire_answer, local_is_offerer=False)
    assert (theirs.remote_address, theirs.remote_port) == ("127.0.0.1", 40000)


def test_static_payload_types_match_without_rtpmap():
    offer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
    )
    answer = create_answer(offer, PSTN_SIDE)
    assert answer.media[0].formats == ["8", "0", "101"]
    assert answer.media[0].fmtps["101"] == "0-15"  # the offerer's event range is kept
    negotiated = negotiate(offer, answer, local_is_offerer=False)
    assert negotiated.codec == RtpMap(8, "PCMA", 8000)


def test_no_common_codec_is_488():
    offer = parse_sdp(JIGASI_ANSWER)
    with pytest.raises(OfferAnswerError) as err:
        create_answer(offer, PSTN_SIDE)
    assert err.value.status == 488


def test_srtp_only_offer_is_refused():
    offer = parse_sdp(JIGASI_ANSWER.replace("RTP/AVP", "RTP/SAVP"))
    with pytest.raises(OfferAnswerError):
        create_answer(offer, JIGASI_SIDE)


def test_second_audio_stream_is_refused_with_port_0():
    two = JIGASI_ANSWER + "m=audio 10006 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"
    answer = create_answer(parse_sdp(two), JIGASI_SIDE)
    assert [m.port for m in answer.media] == [40000, 0]


def test_answer_with_other_mline_count_is_rejected():
    offer = parse_sdp(JIGASI_MIXER_OFFER)
    with pytest.raises(OfferAnswerError):
        negotiate(offer, parse_sdp(JIGASI_ANSWER), local_is_offerer=True)


def test_rtcp_attribute_and_rtcp_mux():
    sdp = parse_sdp(
        JIGASI_ANSWER + "a=rtcp:10020 IN IP4 10.0.0.6\r\na=rtcp-mux\r\na=maxptime:40\r\n"
    )
    audio = sdp.media[0]
    assert audio.rtcp == Rtcp(10020, Connection("10.0.0.6"))
    assert audio.rtcp_mux is True
    assert audio.maxptime == 40
    offer = create_offer(JIGASI_SIDE)
    negotiated = negotiate(offer, sdp, local_is_offerer=True)
    assert negotiated.remote_rtcp_port == 10020  # we did not offer rtcp-mux
    muxed = negotiate(
        create_offer(LocalMedia(address="127.0.0.1", port=4000, rtcp_mux=True)),
        sdp,
        local_is_offerer=True,
    )
    assert muxed.rtcp_mux and muxed.remote_rtcp_port == 10004


def test_round_trip_keeps_unknown_attributes_and_lines():
    text = JIGASI_MIXER_OFFER.replace("s=-\r\n", "s=-\r\ni=info\r\nu=http://x\r\n") + (
        "a=candidate:1 1 UDP 1 10.0.0.1 1 typ host\r\n"
    )
    sdp = parse_sdp(text)
    assert sdp.other_lines == [("u", "http://x")]
    assert ("rtcp-xr", "voip-metrics") in sdp.media[0].attributes
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_built_sdp_round_trips():
    session = SessionDescription(
        origin=Origin("me", 5, 6, address="192.0.2.1"),
        connection=Connection("192.0.2.1"),
        media=[
            MediaDescription(
                port=5004,
                formats=["0", "101"],
                rtpmaps={101: RtpMap(101, "telephone-event", 8000)},
                fmtps={"101": "0-16"},
                ptime=20,
                extmaps=[Extmap(1, SSRC_AUDIO_LEVEL, "sendonly", "vad=on")],
                direction="recvonly",
                attributes=[("label", "1")],
            )
        ],
    )
    assert parse_sdp(session.to_bytes()) == session
    assert with_version(session, 7).origin.session_version == 7


def test_rtpmap_without_clock_rate_is_kept_as_an_opaque_attribute():
    sdp = parse_sdp(
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nm=video 4000 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"
    )
    assert sdp.media[0].rtpmaps == {}
    assert sdp.media[0].attributes == [("rtpmap", "31 LPC")]


def test_torture_sdp_from_rfc4475_is_answered_with_pcmu_and_video_refused():
    body = (
        "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\n"
        "t=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"
    )
    answer = create_answer(parse_sdp(body), PSTN_SIDE)
    assert [(m.media, m.port, m.formats) for m in answer.media] == [
        ("audio", 40002, ["0"]),
        ("video", 0, ["31"]),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "o=- 0 0 IN IP4 1.2.3.4\r\n",  # no v=
        "v=1\r\no=- 0 0 IN IP4 1.2.3.4\r\n",
        "v=0\r\ns=-\r\n",  # no o=
        "v=0\r\no=- x 0 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP opus\r\n",
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\nx=unknown\r\n",
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=extmap:0 urn:x\r\n",
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=extmap:1/sideways urn:x\r\n",
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:twenty\r\n",
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nbogus\r\n",
        "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\nt=0\r\n",
    ],
)
def test_malformed_sdp_raises_sdp_parse_error(bad):
    with pytest.raises(SdpParseError) as err:
        parse_sdp(bad)
    assert err.value.status == 400


def test_audio_stream_without_any_connection_address_is_refused():
    offer = parse_sdp(JIGASI_ANSWER.replace("c=IN IP4 10.0.0.5\r\n", ""))
    with pytest.raises(OfferAnswerError):
        create_answer(offer, JIGASI_SIDE)


def test_telephone_event_at_the_codec_clock_rate_is_preferred():
    offer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 111 101 110\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=rtpmap:110 telephone-event/48000\r\n"
    )
    answer = create_answer(offer, JIGASI_SIDE)
    assert answer.media[0].formats == ["111", "110"]
    assert negotiate(offer, answer, local_is_offerer=False).telephone_event_payload_type == 110
