"""Per-frame CPU cost of the media primitives (µs per 20 ms frame), on real speech.

    .venv/bin/python bench/media_codecs.py            # timings
    .venv/bin/python bench/media_codecs.py --quality  # + Opus PESQ table (needs `pesq`)

Each figure is the median over ``--runs`` runs (range in brackets); each run times every
frame of ~10 s of espeak-ng speech (500 frames) once and divides. Single thread, measured in
CPU time of this thread (``time.thread_time``), so other processes competing for the cores
inflate the figures less than wall-clock timing would; cache and frequency effects remain.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dialbridge.media import dtmf, levels, rtcp
from dialbridge.media.codecs import g711, opus
from dialbridge.media.rtp import RtpPacket

TEXT = (
    "Welcome to the conference service. Please enter your meeting PIN followed by the pound "
    "key. The quick brown fox jumps over the lazy dog. Thank you for calling, your meeting "
    "will start shortly. If you do not know the number, ask the person who invited you."
)


def speech(rate: int) -> np.ndarray:
    """~10 s of speech at ``rate`` (espeak-ng + sox), or shaped noise if they are missing."""
    if shutil.which("espeak-ng") and shutil.which("sox"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "s.wav"
            tts = subprocess.run(
                ["espeak-ng", "-v", "en-us", "--stdout", TEXT], check=True, capture_output=True
            )
            subprocess.run(
                ["sox", "-t", "wav", "-", "-r", str(rate), "-c", "1", "-b", "16", str(out)],
                input=tts.stdout,
                check=True,
                capture_output=True,
            )
            with wave.open(str(out)) as w:
                x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    else:
        print("(espeak-ng/sox missing: using modulated noise)", file=sys.stderr)
        rng = np.random.default_rng(0)
        n = rate * 10
        x = (rng.normal(size=n) * 3000 * (1 + np.sin(np.arange(n) / rate * 7))).astype(np.int16)
    per = rate // 50
    return x[: len(x) // per * per][: 500 * per]


def timeit(fn: Callable[[object], object], items: list, runs: int) -> tuple[float, float, float]:
    per_run = []
    for _ in range(runs):
        t0 = time.thread_time()
        for item in items:
            fn(item)
        per_run.append((time.thread_time() - t0) / len(items) * 1e6)
    return statistics.median(per_run), min(per_run), max(per_run)


def row(name: str, result: tuple[float, float, float]) -> None:
    med, lo, hi = result
    print(f"{name:<62} {med:8.1f}   [{lo:.1f}-{hi:.1f}]")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quality", action="store_true", help="also print the Opus PESQ table")
    args = ap.parse_args()
    runs = args.runs

    s8 = speech(8000)
    s48 = speech(48000)
    f8 = list(s8.reshape(-1, 160))
    f48 = list(s48.reshape(-1, 960))
    print(f"libopus: {opus.libopus_version()} ({opus.libopus_path()})")
    print(f"{len(f8)} frames of speech; CPU µs per 20 ms frame, median of {runs} runs [range]\n")

    # -- G.711 --
    row("G.711 µ-law encode (numpy LUT)", timeit(g711.ulaw_encode, f8, runs))
    u = [g711.ulaw_encode(f) for f in f8]
    row("G.711 µ-law decode (numpy LUT)", timeit(g711.ulaw_decode, u, runs))
    row("G.711 A-law encode", timeit(g711.alaw_encode, f8, runs))
    a = [g711.alaw_encode(f) for f in f8]
    row("G.711 A-law decode", timeit(g711.alaw_decode, a, runs))

    # -- G.722 (optional codec; PyAV's FFmpeg g722 plus the 2x resamplers) --
    from dialbridge.media import audio
    from dialbridge.media.codecs import create_decoder, create_encoder

    enc722 = create_encoder("G722")
    row("G.722 encode (8k frame -> 2x up -> FFmpeg g722)", timeit(enc722.encode, f8, runs))
    p722 = [create_encoder("G722").encode(f) for f in f8]
    dec722 = create_decoder("G722")
    row("G.722 decode (FFmpeg g722 -> 2x down)", timeit(dec722.decode, p722, runs))
    up = audio.Upsampler2x()
    row("Upsampler2x 8k->16k (48-tap polyphase FIR)", timeit(up.process, f8, runs))
    wide = [np.repeat(f, 2) for f in f8]
    down = audio.Downsampler2x()
    row("Downsampler2x 16k->8k", timeit(down.process, wide, runs))

    # -- Opus encode, libopus via ctypes --
    for rate, frames in ((8000, f8), (48000, f48)):
        for complexity in (1, 5, 10):
            enc = opus.OpusEncoder(pcm_rate=rate, complexity=complexity)
            row(
                f"Opus encode {rate // 1000}k in, complexity {complexity}, 32 kbit/s (libopus)",
                timeit(enc.encode, frames, runs),
            )
    enc = opus.OpusEncoder(pcm_rate=8000, complexity=5, bitrate=16000, fec=False)
    row("Opus encode 8k in, complexity 5, 16 kbit/s, no FEC", timeit(enc.encode, f8, runs))

    # -- Opus encode through PyAV's FFmpeg wrapper, for comparison --
    try:
        import av

        for rate, frames in ((8000, f8), (48000, f48)):
            for complexity in (5, 10):
                ctx = av.CodecContext.create("libopus", "w")
                ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = rate, "mono", "s16", 32000
                ctx.options = {
                    "application": "voip",
                    "frame_duration": "20",
                    "compression_level": str(complexity),
                }
                ctx.open()
                pts = [0]

                def pyav_encode(pcm, ctx=ctx, rate=rate, pts=pts):
                    fr = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
                    fr.sample_rate = rate
                    fr.pts = pts[0]
                    pts[0] += len(pcm)
                    return [bytes(p) for p in ctx.encode(fr)]

                row(
                    f"Opus encode {rate // 1000}k in, complexity {complexity} (PyAV CodecContext)",
                    timeit(pyav_encode, frames, runs),
                )
    except Exception as exc:  # pragma: no cover - informational only
        print(f"(PyAV comparison skipped: {exc})")

    # -- Opus decode --
    packets = [opus.OpusEncoder(pcm_rate=8000).encode(f) for f in f8]
    packets48 = [opus.OpusEncoder(pcm_rate=48000).encode(f) for f in f48]
    for out_rate in (8000, 48000):
        for label, pk in (("8k-encoded", packets), ("48k-encoded", packets48)):
            dec = opus.OpusDecoder(pcm_rate=out_rate)
            row(
                f"Opus decode {label} packets to {out_rate // 1000}k (libopus)",
                timeit(dec.decode, pk, runs),
            )
    dec = opus.OpusDecoder(8000)
    for p in packets[:50]:
        dec.decode(p)
    row("Opus PLC frame at 8k (decode NULL)", timeit(lambda _p: dec.conceal(), packets, runs))
    row("Opus FEC frame at 8k (from next packet)", timeit(dec.conceal, packets, runs))
    try:
        import av

        ctx = av.CodecContext.create("libopus", "r")
        ctx.sample_rate, ctx.layout = 48000, "mono"
        ctx.open()
        row(
            "Opus decode to 48k (PyAV CodecContext; cannot output 8k)",
            timeit(lambda p: [f.to_ndarray() for f in ctx.decode(av.Packet(p))], packets48, runs),
        )
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)

        def down(pcm):
            fr = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            fr.sample_rate = 48000
            return [f.to_ndarray() for f in resampler.resample(fr)]

        row(
            "Resample 48k->8k (av.AudioResampler) - avoided by the 8k path", timeit(down, f48, runs)
        )
    except Exception as exc:  # pragma: no cover
        print(f"(PyAV comparison skipped: {exc})")

    # -- levels --
    row("RFC 6464 dBov of a frame (levels.dbov)", timeit(levels.dbov, f8, runs))
    meter = levels.AudioLevelMeter()
    row("RFC 6464 level + VAD (AudioLevelMeter.measure)", timeit(meter.measure, f8, runs))

    # -- DTMF --
    det = dtmf.InbandDtmfDetector()
    row("In-band DTMF detector, speech frames", timeit(det.process, f8, runs))
    tones = np.concatenate([dtmf.dtmf_tone(d, 0.1, -10) for d in "0123456789*#ABCD" * 4])
    tone_frames = list(np.round(tones).astype(np.int16)[: len(tones) // 160 * 160].reshape(-1, 160))
    det = dtmf.InbandDtmfDetector()
    row("In-band DTMF detector, continuous tones", timeit(det.process, tone_frames, runs))
    silence = [np.zeros(160, dtype=np.int16)] * len(f8)
    row("In-band DTMF detector, silence", timeit(det.process, silence, runs))
    te = [
        RtpPacket(
            101, i, 1000 * (i // 8), 1, dtmf.TelephoneEvent(5, i % 8 >= 5, 10, 160).serialize()
        )
        for i in range(len(f8))
    ]
    rx = dtmf.Rfc4733Receiver()
    row("RFC 4733 receive, per packet", timeit(lambda p: rx.receive(p, 0.0), te, runs))

    # -- RTP --
    raw = [
        RtpPacket(
            111, i & 0xFFFF, i * 960, 0x1234, p, extensions={1: levels.encode_audio_level(30, True)}
        ).serialize()
        for i, p in enumerate(packets)
    ]
    row("RTP parse with RFC 6464 extension", timeit(RtpPacket.parse, raw, runs))
    parsed = [RtpPacket.parse(r) for r in raw]
    row("RTP serialize with RFC 6464 extension", timeit(RtpPacket.serialize, parsed, runs))
    plain = [RtpPacket(0, i & 0xFFFF, i * 160, 1, u[i]).serialize() for i in range(len(u))]
    row("RTP parse, fixed header only (PCMU)", timeit(RtpPacket.parse, plain, runs))

    # -- RTCP --
    stats = rtcp.RtpReceiverStats(1, 48000, probation=0)
    seqs = list(range(len(packets)))
    row(
        "RtpReceiverStats.on_rtp (A.1 + A.8), per packet",
        timeit(lambda i: stats.on_rtp(i, i * 960, i * 0.02), seqs, runs),
    )
    compound = rtcp.serialize_rtcp(
        [
            rtcp.ReceiverReport(7, (stats.report_block(1.0),)),
            rtcp.SourceDescription.with_cname(7, "dialbridge@example.test"),
        ]
    )
    row("RTCP parse RR + SDES compound", timeit(rtcp.parse_rtcp, [compound] * 500, runs))

    if args.quality:
        quality_table(s8)


def quality_table(s8: np.ndarray) -> None:
    """PESQ P.862 narrowband of Opus at 8 kHz for several settings, 0 % and 3 % loss."""
    from pesq import pesq

    print("\nOpus 8 kHz in/out, PESQ-NB MOS-LQO (espeak-ng speech); 3 % random loss, FEC from next")
    print(
        f"{'bitrate':>8} {'cplx':>4} {'FEC':>4} {'bytes':>6} {'0 %':>6} {'3 %':>6} {'3 % PLC only':>12}"
    )
    frames = s8.reshape(-1, 160)
    rng = np.random.default_rng(1)
    lost = rng.random(len(frames)) < 0.03
    lost[-1] = False
    for bitrate in (16000, 24000, 32000):
        for complexity in (1, 5, 10):
            for fec in (True, False):
                enc = opus.OpusEncoder(bitrate=bitrate, complexity=complexity, fec=fec)
                pk = [enc.encode(f) for f in frames]
                dec = opus.OpusDecoder()
                clean = np.concatenate([dec.decode(p) for p in pk])
                scores = []
                for use_fec in (True, False):
                    dec = opus.OpusDecoder()
                    out = []
                    for i, p in enumerate(pk):
                        if lost[i]:
                            nxt = pk[i + 1] if use_fec and not lost[i + 1] else None
                            out.append(dec.conceal(nxt))
                        else:
                            out.append(dec.decode(p))
                    scores.append(pesq(8000, s8, np.concatenate(out), "nb"))
                mos = pesq(8000, s8, clean, "nb")
                size = np.mean([len(p) for p in pk])
                print(
                    f"{bitrate:>8} {complexity:>4} {'on' if fec else 'off':>4} {size:>6.1f} "
                    f"{mos:>6.2f} {scores[0]:>6.2f} {scores[1]:>12.2f}"
                )


if __name__ == "__main__":
    main()
