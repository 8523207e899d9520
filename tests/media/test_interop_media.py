"""Media interop through a real bridge of two legs, with real SIP peers on 127.0.0.1.

SIPp (``uac_pcap``: PCMA speech from Debian's pcap, then RFC 2833 digit "1") calls our UA; the
test answers it, dials baresip (Opus, sending a 1 kHz tone from a WAV file and recording what it
decodes), and bridges the two legs through the media engine. Checked: the PCMA audio and the
digit arrive on the SIPp leg; baresip's tone, detected by frequency, is what the SIPp leg is
sent; and audio flows back into baresip (its own recording of what it received).

The SIP side is ``dialbridge.sip`` (UA, SDP offer/answer); the small glue from a negotiated SDP
to ``RtpParameters`` below is what the call layer does for real.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from dialbridge.media.control import DtmfReceived, MediaControl, MediaEngine, RtpParameters
from dialbridge.sip import sdp as sdpmod
from dialbridge.sip.security import Trunk
from dialbridge.sip.ua import UserAgent, UserAgentConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the SIP peer harness
from sip.peers.baresip import Baresip, BaresipAccount, BaresipConfig  # noqa: E402
from sip.peers.ports import LOOPBACK, free_port  # noqa: E402

SIPP = shutil.which("sipp")
BARESIP = shutil.which("baresip")
PCAP_DIR = Path("/usr/share/sip-tester")

pytestmark = [
    pytest.mark.peers,
    pytest.mark.slow,
    pytest.mark.skipif(SIPP is None, reason="sipp not installed (Debian package sip-tester)"),
    pytest.mark.skipif(BARESIP is None, reason="baresip not installed (baresip-core)"),
]

TONE_HZ = 1000.0


def params_from(offer: bytes, answer: bytes, *, local_is_offerer: bool, **extra) -> RtpParameters:
    """The call layer's glue: negotiated SDP → media parameters."""
    neg = sdpmod.negotiate(
        sdpmod.parse_sdp(offer), sdpmod.parse_sdp(answer), local_is_offerer=local_is_offerer
    )
    return RtpParameters(
        codec=neg.codec.encoding if neg.codec.encoding.lower() != "opus" else "opus",
        payload_type=neg.payload_type,
        telephone_event_pt=neg.telephone_event_payload_type,
        audio_level_id=neg.extmap_ids.get(sdpmod.SSRC_AUDIO_LEVEL),
        remote_rtp=(neg.remote_address, neg.remote_port),
        remote_rtcp=(neg.remote_address, neg.remote_rtcp_port),
        rtcp_mux=neg.rtcp_mux,
        **extra,
    )


def write_tone(path: Path, seconds: float = 30.0, rate: int = 48000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    mono = (8000 * np.sin(2 * np.pi * TONE_HZ * t)).astype("<i2")
    x = np.repeat(mono, 2)  # baresip's aufile wants the codec's 2 channels (opus/48000/2)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(float) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


async def test_sipp_pcma_and_rfc2833_bridged_to_baresip_opus(tmp_path):
    engine = MediaEngine(port_low=34000, port_high=34999)
    media = MediaControl(engine)
    events: list = []
    media.subscribe(events.append)
    sent_to_sipp: list[np.ndarray] = []
    bridged = asyncio.Event()
    failures: list[BaseException] = []

    # baresip: auto-answers, sends the tone, records what it decodes (sndfile module).
    tone = tmp_path / "tone48k.wav"
    write_tone(tone)
    rec_dir = tmp_path / "baresip-rec"
    rec_dir.mkdir()
    account = BaresipAccount("bob", LOOPBACK, "x", regint=0, audio_codecs="opus/48000/2")
    cfg = BaresipConfig(tmp_path / "baresip", accounts=[account])
    bob = Baresip(cfg, lifetime=60)
    conf = (cfg.directory / "config").read_text()
    conf = conf.replace("audio_source\t\taubridge,nil", f"audio_source\t\taufile,{tone}")
    conf += f"module\t\taufile.so\nmodule\t\tsndfile.so\nsnd_path\t\t{rec_dir}\n"
    (cfg.directory / "config").write_text(conf)

    async def route(call) -> None:
        try:
            trunk = await media.create_session("trunk")
            local = sdpmod.LocalMedia(
                LOOPBACK, trunk.rtp_port, codecs=(sdpmod.PCMA, sdpmod.PCMU), extmap_uris=()
            )
            answer = sdpmod.create_answer(sdpmod.parse_sdp(call.offer), local).to_bytes()
            await media.set_remote("trunk", params_from(call.offer, answer, local_is_offerer=False))
            await call.answer(answer)
            # Record what the trunk leg is given to send (the bridged audio from baresip).
            core = engine.legs["trunk"].core
            inner = core.send_audio

            def tap(pcm, now):
                if pcm is not None:
                    sent_to_sipp.append(pcm.copy())
                inner(pcm, now)

            core.send_audio = tap
            # The tap needs this direction on the Python send path: without the socket the C
            # data plane does not send for this leg (the other direction, SIPp -> baresip,
            # stays native; tests/media/test_dataplane.py covers native sending end to end).
            core.rtp_fd = None

            leg = await media.create_session("conf")
            offer = sdpmod.create_offer(
                sdpmod.LocalMedia(LOOPBACK, leg.rtp_port, codecs=(sdpmod.OPUS,))
            ).to_bytes()
            out = await ua.invite(f"sip:bob@{LOOPBACK}:{cfg.sip_port}", sdp=offer)
            dialog = await out.answered()
            await media.set_remote(
                "conf", params_from(offer, dialog.remote_sdp, local_is_offerer=True)
            )
            await media.bridge("trunk", "conf")
            bridged.set()
        except BaseException as exc:  # surfaced by the test below
            failures.append(exc)
            bridged.set()

    sip_port = free_port()
    ua = UserAgent(
        UserAgentConfig(
            udp=[(LOOPBACK, sip_port)],
            domain=LOOPBACK,
            trunks=[Trunk.from_cidrs("sipp", ["127.0.0.0/8"])],
        ),
        router=route,
    )
    await ua.start()
    await bob.start()
    try:
        await bob.wait_ready()
        work = tmp_path / "sipp"
        work.mkdir()
        (work / "pcap").symlink_to(PCAP_DIR)
        sipp = await asyncio.create_subprocess_exec(
            SIPP,
            "-sn",
            "uac_pcap",
            f"{LOOPBACK}:{sip_port}",
            "-i",
            LOOPBACK,
            "-p",
            str(free_port()),
            "-mp",
            str(free_port(span=4)),
            "-m",
            "1",
            "-s",
            "ivr",
            "-nostdin",
            "-timeout",
            "40",
            "-timeout_error",
            "-trace_err",
            cwd=work,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.wait_for(bridged.wait(), 20)
        assert not failures, failures
        code = await asyncio.wait_for(sipp.wait(), 45)
        assert code == 0, f"SIPp exit code {code}"
        await asyncio.sleep(0.3)

        # SIPp → us: PCMA audio and the RFC 2833 digit.
        trunk_core = engine.legs["trunk"].core
        received = sum(jb.stats.received for jb in trunk_core.mixer.streams.values())
        played = sum(jb.stats.played for jb in trunk_core.mixer.streams.values())
        stats = [jb.stats for jb in trunk_core.mixer.streams.values()]
        assert received >= 150 and played >= 140, stats
        digits = [e.digit for e in events if isinstance(e, DtmfReceived)]
        assert digits == ["1"]

        # baresip → us → SIPp: the bridged audio sent to SIPp is baresip's 1 kHz tone.
        conf_core = engine.legs["conf"].core
        assert conf_core.latched is not None
        audio = np.concatenate(sent_to_sipp[-100:])
        assert len(sent_to_sipp) >= 100
        assert abs(peak_hz(audio, 8000) - TONE_HZ) < 15
        assert np.sqrt(np.mean(audio.astype(float) ** 2)) > 1000
    finally:
        await media.close_session("trunk") if "trunk" in engine.legs else None
        await engine.close()
        await bob.quit()
        await ua.close()

    # us → baresip: what baresip decoded from our Opus stream carries SIPp's pcap audio.
    decoded = [p for p in rec_dir.rglob("*.wav") if "dec" in p.name]
    assert decoded, list(rec_dir.rglob("*"))
    with wave.open(str(decoded[0])) as w:
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert len(got) > 0 and np.sqrt(np.mean(got.astype(float) ** 2)) > 100
