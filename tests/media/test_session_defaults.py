"""Encoder settings a session picks when signalling gives none."""

from __future__ import annotations

from dialbridge.media.codecs.opus import OPUS_GET_COMPLEXITY_REQUEST, OPUS_GET_INBAND_FEC_REQUEST
from dialbridge.media.session import MediaSession, RtpParameters


def test_an_opus_session_encodes_at_complexity_1_with_fec_by_default():
    leg = MediaSession("j", RtpParameters("opus", 111, remote_rtp=("192.0.2.1", 5000)), now=0.0)
    assert leg.encoder.get_ctl(OPUS_GET_COMPLEXITY_REQUEST) == 1
    assert leg.encoder.get_ctl(OPUS_GET_INBAND_FEC_REQUEST) == 1


def test_codec_options_override_the_session_defaults():
    params = RtpParameters("opus", 111, codec_options={"complexity": 5})
    leg = MediaSession("j", params, now=0.0)
    assert leg.encoder.get_ctl(OPUS_GET_COMPLEXITY_REQUEST) == 5
