"""baresip 1.0 (Debian `baresip-core`) as a headless SIP user agent (stack-notes §6.2).

`BaresipConfig` writes one config directory per instance; `Baresip` runs it with `-s` (SIP trace on
stdout, with source and destination addresses) and `-t` (hard exit after N seconds), and drives it
through the `cons` module (commands as UDP datagrams), since `stdio` needs a TTY.

Gotchas kept here so no test meets them again:
* `net_interface 127.0.0.1` is required, or SDP carries the first non-loopback address.
* baresip listens on UDP+TCP at `sip_listen` and TLS at port + 1: allocate ports with span=2.
* `aubridge,nil` as source and player: no sound card, no file rate to match.
* Opus: stack-notes §6.2 says `opus/48000/1`; the build here prints `aucodec: opus/48000/2` and
  rejects `/1` ("audio codec not found"). The accounts default to G.711 only.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .ports import LOOPBACK, free_port
from .process import PeerProcess
from .trace import SipRecord, parse_baresip_trace

BARESIP = shutil.which("baresip")
MODULE_PATH = "/usr/lib/baresip/modules"

Transport = Literal["udp", "tcp", "tls"]


@dataclass(frozen=True)
class BaresipAccount:
    """One line of baresip's `accounts` file: an AOR registered at `registrar` ("host:port")."""

    user: str
    registrar: str
    password: str
    transport: Transport = "udp"
    regint: int = 600
    answermode: Literal["auto", "manual"] = "auto"
    # this build registers Opus as opus/48000/2 (measured; stack-notes §6.2 saw /1): G.711 only
    audio_codecs: str = "PCMU/8000/1,PCMA/8000/1"

    def line(self) -> str:
        uri = f"sip:{self.user}@{self.registrar}"
        if self.transport != "udp":
            uri += f";transport={self.transport}"
        return (
            f"<{uri}>;auth_pass={self.password};answermode={self.answermode}"
            f";audio_codecs={self.audio_codecs};regint={self.regint}"
        )


@dataclass
class BaresipConfig:
    directory: Path
    sip_port: int = field(default_factory=lambda: free_port(span=2))
    cons_port: int = field(default_factory=free_port)
    rtp_port_base: int = field(default_factory=lambda: free_port(span=10))
    accounts: list[BaresipAccount] = field(default_factory=list)
    # PEM file of the CA (here: the self-signed server certificate) for verifying TLS servers
    ca_file: Path | None = None

    def write(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            ("poll_method", "epoll"),
            ("sip_listen", f"{LOOPBACK}:{self.sip_port}"),
            ("net_interface", LOOPBACK),
            ("audio_player", "aubridge,nil"),
            ("audio_source", "aubridge,nil"),
            ("audio_alert", "aubridge,nil"),
            ("rtp_ports", f"{self.rtp_port_base}-{self.rtp_port_base + 9}"),
            ("module_path", MODULE_PATH),
            ("module", "cons.so"),
            ("module", "g711.so"),
            ("module", "opus.so"),
            ("module", "aubridge.so"),
            ("module_app", "account.so"),
            ("module_app", "menu.so"),
            ("cons_listen", f"{LOOPBACK}:{self.cons_port}"),
        ]
        if self.ca_file is not None:
            lines.append(("sip_cafile", str(self.ca_file)))
        (self.directory / "config").write_text("".join(f"{k}\t\t{v}\n" for k, v in lines))
        (self.directory / "accounts").write_text("".join(a.line() + "\n" for a in self.accounts))
        (self.directory / "contacts").write_text("")
        return self.directory


class Baresip(PeerProcess):
    def __init__(self, config: BaresipConfig, *, lifetime: int = 60) -> None:
        if BARESIP is None:
            raise RuntimeError("baresip not installed (Debian package baresip-core)")
        self.config = config
        directory = config.write()
        super().__init__(
            [BARESIP, "-f", str(directory), "-s", "-t", str(lifetime)],
            log_path=directory / "baresip.log",
            cwd=directory,
        )

    async def wait_ready(self, timeout: float = 10) -> None:
        await self.wait_for(r"baresip is ready\.", timeout)

    async def wait_registered(self, user: str, timeout: float = 10) -> str:
        """Wait for `user@host: {0/UDP/v4} 200 OK () [1 binding]`; returns that line."""
        match = await self.wait_for(rf"{user}@[^:]+: \{{[^}}]*\}} 200 OK[^\n]*", timeout)
        return match.group(0)

    def command(self, text: str) -> None:
        """One `cons` command datagram, e.g. `/dial sip:x@127.0.0.1:5060`, `/hangup`, `/quit`."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(
                text.encode() + (b"" if text.endswith("\n") else b"\n"),
                (LOOPBACK, self.config.cons_port),
            )

    def messages(self) -> list[SipRecord]:
        return parse_baresip_trace(self.output, self.config.sip_port)

    async def quit(self, timeout: float = 5) -> int:
        if self.returncode is None:
            self.command("/quit")
            try:
                return await self.wait(timeout)
            except TimeoutError:
                pass
        return await self.stop()
