"""RtpParameters.inband_dtmf: "auto" runs the Goertzel detector only where it is needed."""

from __future__ import annotations

import numpy as np
import pytest

from dialbridge.media.bridge import Bridge, can_relay
from dialbridge.media.codecs import create_encoder
from dialbridge.media.dtmf import dtmf_tone
from dialbridge.media.rtp import RtpPacket
from dialbridge.media.session import DtmfReceived, MediaSession, RtpParameters

TRUNK = ("192.0.2.10", 4000)
JIGASI = ("192.0.2.20", 5000)


def trunk(**kw) -> MediaSession:
    return MediaSession("trunk", RtpParameters("PCMU", 0, remote_rtp=TRUNK, **kw), now=0.0)


def digits_heard(leg: MediaSession) -> list[str]:
    """Feed 0.2 s of in-band "5" between silences to the leg; the digits it reports."""
    enc = create_encoder("PCMU")
    audio = np.zeros(40 * 160, np.int16)
    audio[10 * 160 : 20 * 160] = dtmf_tone("5", 0.2, level_dbm0=-10).astype(np.int16)
    events = []
    for n in range(40):
        now = n * 0.02
        payload = enc.encode(audio[n * 160 : (n + 1) * 160])
        leg.receive_rtp(RtpPacket(0, n, n * 160, 0x77, payload).serialize(), TRUNK, now)
        leg.pull_audio(now + 0.01)
        leg.send_audio(None, now + 0.01)
        events += leg.pop_events()
    return [e.digit for e in events if isinstance(e, DtmfReceived)]


def test_auto_detects_inband_digits_on_a_trunk_without_telephone_event():
    leg = trunk(max_streams=1)
    assert leg.params.runs_inband_dtmf
    assert digits_heard(leg) == ["5"]


def test_auto_skips_the_detector_when_the_trunk_negotiated_telephone_event():
    leg = trunk(max_streams=1, telephone_event_pt=101)
    assert not leg.params.runs_inband_dtmf
    assert leg._inband is None
    assert digits_heard(leg) == []


def test_auto_skips_the_detector_on_a_multi_stream_conference_leg():
    params = RtpParameters("opus", 111, audio_level_id=1, remote_rtp=JIGASI, max_streams=3)
    assert not params.runs_inband_dtmf


def test_always_detects_even_with_telephone_event():
    leg = trunk(max_streams=1, telephone_event_pt=101, inband_dtmf="always")
    assert digits_heard(leg) == ["5"]


def test_off_never_detects():
    leg = trunk(max_streams=1, inband_dtmf="off")
    assert digits_heard(leg) == []


def test_booleans_still_mean_always_and_off():
    assert RtpParameters("PCMU", 0, telephone_event_pt=101, inband_dtmf=True).runs_inband_dtmf
    assert not RtpParameters("PCMU", 0, max_streams=1, inband_dtmf=False).runs_inband_dtmf


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        trunk(inband_dtmf="sometimes")


def test_relay_waits_for_the_detector_only_when_it_runs():
    def pcmu_leg(sid: str, **kw) -> MediaSession:
        return MediaSession(
            sid, RtpParameters("PCMU", 0, remote_rtp=TRUNK, max_streams=1, **kw), now=0.0
        )

    with_events = pcmu_leg("a", telephone_event_pt=101)
    without = pcmu_leg("b")
    assert can_relay(with_events, without)  # auto: no detector on a leg that sends RFC 4733
    assert not can_relay(without, with_events)  # auto: this one runs the detector
    bridge = Bridge(without, with_events)
    assert bridge._a_to_b.lookback > 0 and bridge._b_to_a.lookback == 0


def test_a_reinvite_dropping_telephone_event_turns_the_detector_and_look_back_on():
    leg = trunk(max_streams=1, telephone_event_pt=101)
    jigasi = MediaSession(
        "jigasi", RtpParameters("opus", 111, audio_level_id=1, remote_rtp=JIGASI), now=0.0
    )
    bridge = Bridge(leg, jigasi)
    assert bridge._a_to_b.lookback == 0
    leg.set_parameters(RtpParameters("PCMU", 0, remote_rtp=TRUNK, max_streams=1))
    bridge.tick(0.0)
    assert leg._inband is not None
    assert bridge._a_to_b.lookback > 0
