"""Drive SIPp (Debian `sip-tester`) as a subprocess and read back what it saw.

A run is bounded three ways: `-m` calls, SIPp's own `-timeout` (with `-timeout_error`, so a hang
is a failure, not a success), and an asyncio deadline a few seconds later that kills the process.
Every run writes its message trace (`-trace_msg`), errors (`-trace_err`) and final statistics
(`-trace_stat`) into its own directory, which the result parses so a test can assert on the exact
messages SIPp sent and received, not only on its exit code.

SIPp exit codes (sipp(1)): 0 all calls succeeded, 1 at least one failed, 97 exit on internal
command, 99 normal exit without calls processed, 254 could not bind, 255 fatal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import itertools
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from .ports import LOOPBACK
from .trace import SipRecord

SCENARIO_DIR = Path(__file__).parent / "scenarios"
SIPP = shutil.which("sipp")

_TRANSPORT_FLAG = {"udp": "u1", "tcp": "t1"}
_run_ids = itertools.count(1)


def scenario_path(name: str) -> Path:
    """The path of one of our scenario files, by stem (`"register_digest"`)."""
    path = SCENARIO_DIR / f"{name}.xml"
    if not path.exists():
        raise FileNotFoundError(path)
    return path


# --- the trace SIPp writes with -trace_msg ------------------------------------------------------

_SEPARATOR = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$", re.M)
_BANNER = re.compile(
    r"^(?P<transport>\w+) message (?P<direction>sent|received)"
    r"(?: \((?P<sent>\d+) bytes\)| \[(?P<received>\d+)\] bytes) ?:\s*$"
)


def parse_message_trace(text: str) -> list[SipRecord]:
    messages: list[SipRecord] = []
    chunks = _SEPARATOR.split(text)
    # split() gives [prefix, ts1, body1, ts2, body2, ...]
    for stamp, body in zip(chunks[1::2], chunks[2::2], strict=True):
        body = body.lstrip("\r\n")
        banner, _, rest = body.partition("\n")
        match = _BANNER.match(banner.strip())
        if not match:
            continue
        message = rest.lstrip("\r\n").rstrip("\r\n")
        if message:
            messages.append(
                SipRecord(
                    direction=match["direction"],  # type: ignore[arg-type]
                    transport=match["transport"].upper(),
                    text=message + "\n",
                    at=datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp(),
                )
            )
    return messages


def parse_statistics(path: Path) -> dict[str, str]:
    """The last row of SIPp's `-trace_stat` CSV (its final, cumulative figures)."""
    if not path.exists():
        return {}
    rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


# --- one run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SippResult:
    argv: tuple[str, ...]
    returncode: int
    statistics: Mapping[str, str]
    messages: tuple[SipRecord, ...]
    errors: str
    workdir: Path
    timed_out: bool = False

    def _stat(self, name: str) -> int:
        try:
            return int(self.statistics.get(name, "0"))
        except ValueError:
            return 0

    @property
    def successful_calls(self) -> int:
        return self._stat("SuccessfulCall(C)")

    @property
    def failed_calls(self) -> int:
        return self._stat("FailedCall(C)")

    @property
    def retransmissions(self) -> int:
        return self._stat("Retransmissions(C)")

    def failure_counts(self) -> dict[str, int]:
        """Non-zero `Failed*(C)` counters, e.g. `{"FailedTcpClosed": 1}`."""
        out = {}
        for key, value in self.statistics.items():
            if key.startswith("Failed") and key.endswith("(C)") and key != "FailedCall(C)":
                with contextlib.suppress(ValueError):
                    if int(value):
                        out[key[:-3]] = int(value)
        return out

    def flow(self) -> list[str]:
        """The dialogue as short strings (`>INVITE`, `<100 INVITE`, ...), in trace order."""
        return [m.describe() for m in self.messages]

    def received(self, *, method: str | None = None, status: int | None = None) -> list[SipRecord]:
        return [
            m
            for m in self.messages
            if m.direction == "received"
            and (method is None or m.method == method)
            and (status is None or m.status == status)
        ]

    def sent(self, *, method: str | None = None, status: int | None = None) -> list[SipRecord]:
        return [
            m
            for m in self.messages
            if m.direction == "sent"
            and (method is None or m.method == method)
            and (status is None or m.status == status)
        ]

    def explain(self) -> str:
        """Everything a failing assertion should print."""
        return (
            f"sipp {' '.join(self.argv)}\nreturncode={self.returncode} timed_out={self.timed_out}\n"
            f"successful={self.successful_calls} failed={self.failed_calls} "
            f"{self.failure_counts()}\n"
            f"flow={self.flow()}\nerrors:\n{self.errors[-3000:]}"
        )


@dataclass
class Sipp:
    """One SIPp process.

    `scenario` is a built-in name (`"uas"`, `"uac"`) or a path to an XML file. `remote` is the
    peer's `host:port` (UAC side); leave it None for a server-side scenario. `keys` become `-key
    name value`, read in the scenario as `[name]`.
    """

    scenario: str | Path
    workdir: Path
    local_port: int
    remote: str | None = None
    transport: Literal["udp", "tcp"] = "udp"
    calls: int = 1
    timeout: float = 20.0
    service: str | None = None
    auth: tuple[str, str] | None = None
    keys: Mapping[str, str] = field(default_factory=dict)
    rate: float | None = None
    rate_period_ms: int | None = None
    max_concurrent: int | None = None
    trace: bool = True
    extra_args: Sequence[str] = ()
    name: str = ""
    # What our scenario files write into Request-URIs, Via and Contact (keys `target`,
    # `via_transport`, `contact_port`, `contact_transport`). They differ from the socket-level
    # values only when SIPp talks through a TLS tunnel (see tls_tunnel): then the SIP layer must
    # name the dialbridge TLS listener and the tunnel that leads back to SIPp.
    target: str | None = None
    advertised_transport: str | None = None
    contact_port: int | None = None
    # digest `uri` (SIPp's -auth_uri, "user@host:port"); SIPp's default is remote_ip:remote_port,
    # right for REGISTER sip:host:port only
    auth_uri: str | None = None
    # Any 127.0.0.0/8 address works on lo: 127.0.0.2 plays "a source that is not a trunk".
    local_ip: str = LOOPBACK

    _proc: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name:
            stem = Path(self.scenario).stem if isinstance(self.scenario, Path) else self.scenario
            self.name = f"{stem}-{next(_run_ids)}"
        self.rundir = self.workdir / self.name
        self.rundir.mkdir(parents=True, exist_ok=True)

    @property
    def message_file(self) -> Path:
        return self.rundir / "messages.log"

    @property
    def error_file(self) -> Path:
        return self.rundir / "errors.log"

    @property
    def stat_file(self) -> Path:
        return self.rundir / "stats.csv"

    @property
    def screen_file(self) -> Path:
        return self.rundir / "screen.txt"

    def argv(self) -> list[str]:
        if SIPP is None:
            raise RuntimeError("sipp not installed (Debian package sip-tester)")
        args = [SIPP]
        if isinstance(self.scenario, Path):
            args += ["-sf", str(self.scenario)]
        else:
            args += ["-sn", self.scenario]
        if self.remote:
            args.append(self.remote)
        args += [
            "-i",
            self.local_ip,
            "-p",
            str(self.local_port),
            "-t",
            _TRANSPORT_FLAG[self.transport],
        ]
        args += [
            "-m",
            str(self.calls),
            "-nostdin",
            "-timeout",
            f"{self.timeout:g}s",
            "-timeout_error",
        ]
        args += ["-trace_err", "-error_file", str(self.error_file)]
        args += ["-trace_stat", "-stf", str(self.stat_file)]
        if self.trace:
            args += ["-trace_msg", "-message_file", str(self.message_file)]
        if self.service:
            args += ["-s", self.service]
        if self.auth:
            args += ["-au", self.auth[0], "-ap", self.auth[1]]
            if self.auth_uri:
                args += ["-auth_uri", self.auth_uri]
            elif self.target and self.target != self.remote:
                # SIPp's digest uri defaults to remote_ip:remote_port, the tunnel's address here
                args += ["-auth_uri", self.target]
        if self.rate is not None:
            args += ["-r", f"{self.rate:g}"]
        if self.rate_period_ms is not None:
            args += ["-rp", str(self.rate_period_ms)]
        if self.max_concurrent is not None:
            args += ["-l", str(self.max_concurrent)]
        keys = {
            "target": self.target or self.remote or f"{self.local_ip}:{self.local_port}",
            "via_transport": (self.advertised_transport or self.transport).upper(),
            "contact_transport": (self.advertised_transport or self.transport).lower(),
            "contact_port": str(self.contact_port or self.local_port),
            **self.keys,
        }
        for key, value in keys.items():
            args += ["-key", key, value]
        args += list(self.extra_args)
        return args

    async def start(self) -> None:
        self._screen = open(self.screen_file, "wb")  # noqa: SIM115 - closed in wait()
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv(),
            cwd=self.rundir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._screen,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def wait(self) -> SippResult:
        assert self._proc is not None, "start() first"
        timed_out = False
        try:
            await asyncio.wait_for(self._proc.wait(), self.timeout + 10)
        except TimeoutError:
            timed_out = True
            self.kill()
            await self._proc.wait()
        finally:
            self._screen.close()
        return self._result(self._proc.returncode or 0, timed_out)

    async def run(self) -> SippResult:
        await self.start()
        return await self.wait()

    def run_sync(self) -> SippResult:
        """Blocking variant for scripts (bench) that do not run an event loop."""
        with open(self.screen_file, "wb") as screen:
            try:
                proc = subprocess.run(
                    self.argv(),
                    cwd=self.rundir,
                    stdin=subprocess.DEVNULL,
                    stdout=screen,
                    stderr=subprocess.STDOUT,
                    timeout=self.timeout + 10,
                )
                return self._result(proc.returncode, False)
            except subprocess.TimeoutExpired:
                return self._result(-9, True)

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    async def ensure_listening(self, timeout: float = 5.0) -> None:
        """Wait until a server-side SIPp has bound its port (it prints its screen once bound)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc is not None and self._proc.returncode is not None:
                raise RuntimeError(
                    f"sipp exited early: {self.screen_file.read_text(errors='replace')[-2000:]}"
                )
            if _port_bound(self.local_port, self.transport):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"sipp did not bind {self.transport}:{self.local_port}")

    def _result(self, returncode: int, timed_out: bool) -> SippResult:
        trace = self.message_file.read_text(errors="replace") if self.message_file.exists() else ""
        errors = self.error_file.read_text(errors="replace") if self.error_file.exists() else ""
        return SippResult(
            argv=tuple(self.argv()),
            returncode=returncode,
            statistics=parse_statistics(self.stat_file),
            messages=tuple(parse_message_trace(trace)),
            errors=errors,
            workdir=self.rundir,
            timed_out=timed_out,
        )


def _port_bound(port: int, transport: str) -> bool:
    """True when something on 127.0.0.1 holds the port (read from /proc/net, no probing traffic)."""
    table = "/proc/net/udp" if transport == "udp" else "/proc/net/tcp"
    wanted = f"0100007F:{port:04X}"
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        # TCP: state 0A is LISTEN
        if len(parts) > 3 and parts[1] == wanted and (transport == "udp" or parts[3] == "0A"):
            return True
    return False


def describe_flows(results: Iterable[SippResult]) -> str:
    return "\n\n".join(r.explain() for r in results)
