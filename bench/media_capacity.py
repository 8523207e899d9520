"""Media capacity: N bridged calls over loopback UDP, CPU per call-second in the media process.

Each call is two legs in one dialbridge media process (uvloop, one shared 20 ms tick):

* a trunk leg, PCMU + telephone-event (as a real trunk offers it, so the in-band DTMF
  detector stays off: ``inband_dtmf="auto"``), fed 50 packets/s by the generator;
* a Jigasi leg, Opus (8 kHz SILK path), fed 3 SSRCs × 50 packets/s with RFC 6464 levels,
  mixed N-loudest (N = 3), and tagged with RFC 6464 on the way out. ``--talkers`` says who
  speaks: ``turns`` (default: one at a time, the others send room noise), ``all`` (three at
  once: the worst case, three decodes per tick) or ``one`` (one talker, two muted).

The generator is a separate process (pinned to another core when there is one) that sends
pre-encoded packets on an absolute 20 ms schedule and never reads what comes back. The media
process's CPU time (``time.process_time``) is measured over a fixed wall interval after a
warm-up, and turned into CPU µs per call-second and calls per core at 100 %.

Run::

    .venv/bin/python bench/media_capacity.py --calls 100 --seconds 10
    .venv/bin/python bench/media_capacity.py --calls 100 --talkers all   # 3 talk at once
    .venv/bin/python bench/media_capacity.py --calls 50 --profile             # cProfile top entries
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import struct
import sys
import time

import numpy as np

HOST = "127.0.0.1"
TICK = 0.020
LOOP_FRAMES = 750  # 15 s of pre-encoded audio per stream, looped
TURN_FRAMES = 250  # "turns" mode: each participant talks 5 s, then listens 10 s
_HDR = struct.Struct("!BBHII")


def speech_like(seconds: float, seed: int, level: float) -> np.ndarray:
    """Voiced harmonics with a syllable-rate envelope and pauses, plus faint noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 8000)
    t = np.arange(n) / 8000
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.3 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / 8000
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.5 * t + seed), 0, None) ** 2
    env *= (np.sin(2 * np.pi * 0.2 * t + seed) > -0.3).astype(float)  # pauses
    x = level * env * voiced / 2 + rng.normal(0, 20, n)
    return np.clip(x, -32767, 32767).astype(np.int16)


def encode_stream(codec: str, pcm: np.ndarray, level_id: int | None) -> list[bytes]:
    """Pre-encoded RTP bodies (everything after the 12-byte header) for one stream."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from dialbridge.media.codecs import create_encoder
    from dialbridge.media.levels import AudioLevelMeter

    enc = create_encoder(codec)
    meter = AudioLevelMeter()
    bodies = []
    for i in range(LOOP_FRAMES):
        frame = pcm[i * 160 : (i + 1) * 160]
        payload = enc.encode(frame)
        if level_id is None:
            bodies.append(payload)
        else:
            lv = meter.measure(frame)
            ext = struct.pack(
                "!HHBBH", 0xBEDE, 1, level_id << 4, (0x80 if lv.voice else 0) | lv.level, 0
            )
            bodies.append(ext + payload)
    return bodies


def jigasi_participants(talkers: str) -> list[np.ndarray]:
    """PCM of the 3 SSRCs Jigasi forwards (15 s loops).

    * ``turns``: one participant talks at a time (5 s each, in turn); the two listening have
      room noise at about -75 dBov. The usual conference.
    * ``all``: all three talk at once, all the time (worst case: 3 decodes every tick).
    * ``one``: participant 0 talks all the time, the other two are muted (digital silence).
    """
    n = LOOP_FRAMES * 160
    rng = np.random.default_rng(99)
    out = []
    for s in range(3):
        speech = speech_like(n / 8000, 10 + s, [9000, 6000, 4000][s])
        noise = rng.normal(0, 4, n).astype(np.int16)  # about -75 dBov
        if talkers == "all" or (talkers == "one" and s == 0):
            out.append(speech)
        elif talkers == "one":
            out.append(np.zeros(n, np.int16))
        else:
            pcm = noise.copy()
            turn = slice(s * TURN_FRAMES * 160, (s + 1) * TURN_FRAMES * 160)
            pcm[turn] = speech[turn]
            out.append(pcm)
    return out


def generator(conn, calls: int, talkers: str, cpu: int | None) -> None:
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})
    trunk_bodies = encode_stream("PCMU", speech_like(LOOP_FRAMES / 50, 1, 9000), None)
    jigasi_bodies = [encode_stream("opus", pcm, 1) for pcm in jigasi_participants(talkers)]
    targets = conn.recv()  # [(trunk_port, jigasi_port)]
    socks = []
    addrs = []
    for trunk_port, jigasi_port in targets:
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind((HOST, 0))
        b.bind((HOST, 0))
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        socks.append((a, (HOST, trunk_port), b, (HOST, jigasi_port)))
        addrs.append((a.getsockname(), b.getsockname()))
    conn.send(addrs)
    conn.recv()  # go
    start = time.monotonic()
    n = 0
    late = 0
    while not conn.poll():
        idx = n % LOOP_FRAMES
        seq = n & 0xFFFF
        tb = trunk_bodies[idx]
        jb = [jigasi_bodies[s][idx] for s in range(3)]
        for c, (a, ta, b, ja) in enumerate(socks):
            a.sendto(_HDR.pack(0x80, 0, seq, (n * 160) & 0xFFFFFFFF, 0x1000 + c) + tb, ta)
            ts = (n * 960) & 0xFFFFFFFF
            for s in range(3):
                b.sendto(_HDR.pack(0x90, 111, seq, ts, 0x20000 + c * 4 + s) + jb[s], ja)
        n += 1
        delay = start + n * TICK - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late += 1
    conn.send({"ticks": n, "late_ticks": late})


def calibrate() -> float:
    """µs per Opus encode (complexity 1) in this process right now: about 33-35 on an idle
    core of the reference VM. A higher figure means the machine is busy (other processes,
    a sibling hyper-thread) and every figure of this run is inflated by about that ratio."""
    from dialbridge.media.codecs import create_encoder

    enc = create_encoder("opus", complexity=1)
    frames = speech_like(4, 5, 9000).reshape(-1, 160)
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for f in frames:
            enc.encode(f)
        best = min(best, (time.process_time() - t0) / len(frames) * 1e6)
    return round(best, 1)


async def media_main(args) -> dict:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from dialbridge.media.control import MediaControl, MediaEngine, RtpParameters

    calibration = calibrate()
    engine = MediaEngine(
        port_low=20000, port_high=29999, media_timeout=3600, native=args.engine == "native"
    )
    if args.engine == "native" and engine.native is None:
        raise SystemExit(
            "the C data plane is not built (pip install -e . builds it): --engine python"
        )
    media = MediaControl(engine)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    gen_cpu = 1 if args.pin and os.cpu_count() and os.cpu_count() > 1 else None
    proc = ctx.Process(target=generator, args=(child, args.calls, args.talkers, gen_cpu))
    proc.start()
    ports = []
    for c in range(args.calls):
        t = await media.create_session(f"t{c}")
        j = await media.create_session(f"j{c}")
        ports.append((t.rtp_port, j.rtp_port))
    parent.send(ports)
    addrs = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
    opus_opts = {"complexity": args.complexity, "bitrate": args.bitrate, "fec": not args.no_fec}
    for c, (taddr, jaddr) in enumerate(addrs):
        await media.set_remote(
            f"t{c}",
            RtpParameters(
                "PCMU",
                0,
                # A real trunk offers telephone-event (RFC 4733), so inband_dtmf="auto" leaves
                # the Goertzel detector off; --trunk-dtmf inband measures a trunk without it.
                telephone_event_pt=101 if args.trunk_dtmf == "rfc4733" else None,
                remote_rtp=tuple(taddr),
                max_streams=1,
            ),
        )
        await media.set_remote(
            f"j{c}",
            RtpParameters(
                "opus",
                111,
                audio_level_id=1,
                remote_rtp=tuple(jaddr),
                max_streams=args.max_streams,
                codec_options=opus_opts,
            ),
        )
        await media.bridge(f"t{c}", f"j{c}")
    # CPU spent inside the shared tick, so that a run on a busy machine (where the loop gets
    # descheduled and ticks are skipped) can be normalised to 50 ticks per second.
    tick_cpu = [0.0]
    inner_tick = engine._tick

    def timed_tick(now: float) -> None:
        t0 = time.thread_time()
        inner_tick(now)
        tick_cpu[0] += time.thread_time() - t0

    engine.clock.callback = timed_tick
    parent.send("go")
    await asyncio.sleep(args.warmup)

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    sent0 = sum(leg.core.packets_sent for leg in engine.legs.values())
    ticks0, late0 = engine.clock.ticks, engine.clock.late_ticks
    cpu0, wall0, tcpu0 = time.process_time(), time.monotonic(), tick_cpu[0]
    times0 = os.times()
    await asyncio.sleep(args.seconds)
    cpu1, wall1, tcpu1 = time.process_time(), time.monotonic(), tick_cpu[0]
    times1 = os.times()
    if profiler is not None:
        profiler.disable()
    sent1 = sum(leg.core.packets_sent for leg in engine.legs.values())
    ticks = engine.clock.ticks - ticks0
    late = engine.clock.late_ticks - late0
    parent.send("stop")
    gen = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
    proc.join(5)

    received = concealed = decoded = skipped = 0
    for leg in engine.legs.values():
        mixer = leg.core.mixer
        decoded += mixer.decoded_frames
        skipped += mixer.skipped_frames
        for jb in mixer.streams.values():
            received += jb.stats.received
            concealed += jb.stats.concealed
    await engine.close()

    wall = wall1 - wall0
    cpu = cpu1 - cpu0
    us_per_call_second = cpu / (args.calls * wall) * 1e6
    in_ticks = tcpu1 - tcpu0
    # Receive path and loop overhead run at the offered packet rate whatever the ticks do;
    # the tick work is scaled to the 50 ticks per second it should have run.
    normalised = ((cpu - in_ticks) / wall + in_ticks / max(ticks, 1) / TICK) / args.calls * 1e6
    result = {
        "calls": args.calls,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "core_busy_pct": round(100 * cpu / wall, 1),
        # Kernel time (system calls, the loopback network path) against our own code.
        "user_cpu_s": round(times1.user - times0.user, 3),
        "system_cpu_s": round(times1.system - times0.system, 3),
        "cpu_us_per_call_second": round(us_per_call_second, 1),
        "calls_per_core_at_100pct": round(1e6 / us_per_call_second, 1),
        "tick_cpu_us_per_call_tick": round(in_ticks / max(ticks, 1) / args.calls * 1e6, 1),
        "other_cpu_us_per_call_second": round((cpu - in_ticks) / wall / args.calls * 1e6, 1),
        "normalised_us_per_call_second": round(normalised, 1),
        "normalised_calls_per_core": round(1e6 / normalised, 1),
        "packets_sent_per_leg_per_s": round((sent1 - sent0) / (2 * args.calls * wall), 1),
        "ticks": ticks,
        "ticks_expected": round(wall / TICK),
        "late_ticks": late,
        "load_average": os.getloadavg()[0],
        "received_packets": received,
        "concealed_frames": concealed,
        "decoded_frames": decoded,
        "skipped_frames": skipped,
        "generator": gen,
        "calibration_opus_encode_us": calibration,
        "calibration_opus_encode_us_after": calibrate(),
        "trunk_dtmf": args.trunk_dtmf,
        "engine": "C data plane" if engine.native is not None else "pure Python",
    }
    if profiler is not None:
        import io
        import pstats

        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.profile_top)
        result["profile"] = out.getvalue()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--talkers", default="turns", choices=["turns", "all", "one"])
    ap.add_argument("--max-streams", type=int, default=3)
    ap.add_argument(
        "--trunk-dtmf",
        default="rfc4733",
        choices=["rfc4733", "inband"],
        help="rfc4733: the trunk negotiates telephone-event (default, like a real trunk); "
        "inband: it does not, so the in-band detector runs on it",
    )
    ap.add_argument(
        "--engine",
        default="native",
        choices=["native", "python"],
        help="native: the C data plane runs bridged calls (default; the product's path when "
        "built); python: the pure-Python engine, for comparison",
    )
    ap.add_argument("--complexity", type=int, default=1)
    ap.add_argument("--bitrate", type=int, default=32000)
    ap.add_argument("--no-fec", action="store_true")
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--pin", action="store_true", help="pin media to core 0, generator to 1")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-top", type=int, default=25)
    args = ap.parse_args()
    if args.pin:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setaffinity(0, {0})
    if args.no_uvloop:
        result = asyncio.run(media_main(args))
    else:
        import uvloop

        result = uvloop.run(media_main(args))
    profile = result.pop("profile", None)
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    if profile:
        print(profile)


if __name__ == "__main__":
    main()
