"""SIP call set-ups per second through a trivial dialbridge UAS, driven by SIPp.

    .venv/bin/python bench/sip_cps.py                       # UDP, default rate ladder
    .venv/bin/python bench/sip_cps.py --transport tcp --rates 100,200,400 --seconds 5

A dialbridge UserAgent runs in a subprocess of its own (uvloop, pinned to CPU 0 when there are
two or more), answering every INVITE at once with a fixed SDP (INVITE/100/200/ACK/BYE/200, no
media). SIPp (pinned to CPU 1) offers calls at each rate of the ladder for `--seconds` seconds
(`-r`, `-m`, `-l`, and a per-message `-recv_timeout`, all bounded). The ladder stops at the first
rate with a failed call or that could not be sustained (achieved < 90 % of offered). Printed
per step: offered and achieved calls/s, failures, the dialbridge process's CPU (from
/proc/PID/stat) as % of one core and µs per call, and the "ceiling" 1e6 / (µs per call): what one
core fully given to the UAS would carry. The figure is the best achieved rate at 0 failed calls;
on a shared machine (check the printed load average) the ceiling is the steadier number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.sip.peers.ports import LOOPBACK, free_port  # noqa: E402
from tests.sip.peers.sipp import Sipp, scenario_path  # noqa: E402

SDP_ANSWER = (
    b"v=0\r\no=dialbridge 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)


# --- the UAS under test (runs in its own process) -------------------------------------------------


async def serve(transport: str, port: int) -> None:
    from dialbridge.sip.security import Trunk
    from dialbridge.sip.ua import UserAgent, UserAgentConfig

    async def answer_at_once(call) -> None:
        await call.answer(SDP_ANSWER)

    config = UserAgentConfig(
        udp=[(LOOPBACK, port)] if transport == "udp" else [],
        tcp=[(LOOPBACK, port)] if transport == "tcp" else [],
        domain=LOOPBACK,
        trunks=[Trunk.from_cidrs("bench", ["127.0.0.1/32"])],
        flood_rate=1e9,
        flood_burst=1e9,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with UserAgent(config, router=answer_at_once):
        print("READY", flush=True)
        await stop.wait()


# --- the driver ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of /proc/PID/stat (proc(5)); [0] here is field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sipp_uas(transport: str, port: int, cpu: int | None) -> subprocess.Popen:
    """The --baseline server: SIPp's built-in uas, to show what the driver itself sustains."""
    proc = subprocess.Popen(
        ["sipp", "-sn", "uas", "-i", LOOPBACK, "-p", str(port), "-t", {"udp": "u1", "tcp": "t1"}[transport],
         "-nostdin", "-timeout", "600s"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
    )  # fmt: skip
    time.sleep(0.5)
    return proc


def start_server(transport: str, port: int, cpu: int | None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--transport", transport, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "READY":
        proc.kill()
        raise RuntimeError(f"bench UAS did not start: {line!r}")
    return proc


def run_step(workdir: Path, transport: str, port: int, rate: int, seconds: float, server_pid: int,
             sipp_cpu: int | None) -> dict:  # fmt: skip
    calls = max(1, int(rate * seconds))
    sipp = Sipp(
        scenario_path("bench_call"),
        workdir,
        free_port(),
        remote=f"{LOOPBACK}:{port}",
        transport=transport,  # type: ignore[arg-type]
        calls=calls,
        timeout=seconds * 3 + 10,
        service="bench",
        rate=rate,
        rate_period_ms=1000,
        max_concurrent=max(rate, 10),
        trace=False,
        extra_args=["-recv_timeout", "5000", "-max_socket", "2000"],
    )
    argv = sipp.argv()
    if sipp_cpu is not None:
        argv = ["taskset", "-c", str(sipp_cpu), *argv]
    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    subprocess.run(argv, cwd=sipp.rundir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=seconds * 3 + 20, check=False)  # fmt: skip
    wall = time.perf_counter() - started
    cpu = cpu_seconds(server_pid) - cpu_before
    result = sipp._result(0, False)
    ok = result.successful_calls
    return {
        "offered": rate,
        "calls": calls,
        "successful": ok,
        "failed": result.failed_calls + (calls - ok - result.failed_calls),
        "achieved": ok / wall if wall else 0.0,
        "wall": wall,
        "cpu_pct": 100 * cpu / wall if wall else 0.0,
        "cpu_us_per_call": 1e6 * cpu / ok if ok else float("nan"),
        "failures": result.failure_counts(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    parser.add_argument("--rates", default="50,100,200,400,800,1200,1600")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the UAS and SIPp to CPUs 0 and 1"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="drive SIPp's own uas instead of dialbridge"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        with contextlib.suppress(ImportError):
            import uvloop

            uvloop.install()
        asyncio.run(serve(args.transport, args.port))
        return 0

    two_cores = len(os.sched_getaffinity(0)) >= 2 and not args.no_pin
    server_cpu, sipp_cpu = (0, 1) if two_cores else (None, None)
    port = free_port()
    start = start_sipp_uas if args.baseline else start_server
    server = start(args.transport, port, server_cpu)
    who = "SIPp uas (baseline)" if args.baseline else "dialbridge UAS"
    print(f"SIP CPS bench: {args.transport.upper()}, {who} pid {server.pid}"
          f"{' on CPU 0, SIPp on CPU 1' if two_cores else ''}, {args.seconds:g} s per step, "
          f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")  # fmt: skip
    # "ceiling": calls/s one fully busy core would carry at this step's CPU cost per call
    print(f"{'offered/s':>9} {'calls':>6} {'ok':>6} {'failed':>6} {'achieved/s':>10} {'UAS CPU %':>9} "
          f"{'CPU µs/call':>11} {'ceiling/s':>9}")  # fmt: skip
    best = None
    try:
        with tempfile.TemporaryDirectory(prefix="sip_cps_") as tmp:
            for rate in (int(r) for r in args.rates.split(",")):
                step = run_step(
                    Path(tmp), args.transport, port, rate, args.seconds, server.pid, sipp_cpu
                )
                print(f"{step['offered']:>9} {step['calls']:>6} {step['successful']:>6} {step['failed']:>6} "
                      f"{step['achieved']:>10.1f} {step['cpu_pct']:>9.1f} {step['cpu_us_per_call']:>11.0f} "
                      f"{1e6 / step['cpu_us_per_call'] if step['successful'] else 0:>9.0f}"
                      f"{'  ' + str(step['failures']) if step['failures'] else ''}", flush=True)  # fmt: skip
                if step["failed"]:
                    break
                if best is None or step["achieved"] > best["achieved"]:
                    best = step
                if step["achieved"] < 0.9 * rate:
                    break  # SIPp (or the UAS) no longer keeps up with the offered rate
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
    if best is None:
        print("RESULT: no step completed without failed calls")
        return 1
    print(f"RESULT: {who}: {best['achieved']:.0f} call set-ups/s at 0 failed calls over {args.transport.upper()} "
          f"(offered {best['offered']}/s); {who} CPU {best['cpu_pct']:.0f}% of one core, "
          f"{best['cpu_us_per_call']:.0f} µs per call (one-core ceiling ~{1e6 / best['cpu_us_per_call']:.0f}/s); "
          f"load average after: {os.getloadavg()[0]:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
