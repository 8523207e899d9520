"""linphonec 5.1 (Debian `linphone-cli`) as a headless SIP user agent (stack-notes §6.3).

Driven through stdin (`register ...`, `call ...`, `terminate`, `quit`), auto-answering (`-a`),
logging at level 6 to stdout. belle-sip logs every message with its peer address:
    channel [0x..]: received [327] new bytes from [UDP://127.0.0.1:5060]:
    channel [0x..]: message sent to [UDP://127.0.0.1:5060], size: [520] bytes
and `messages()` turns those into `SipRecord`s with `src`/`dst` filled.

It wants a writable `$HOME/.local/share/linphone` (its sqlite files); each instance gets its own
HOME under its directory. It rewrites its rc file on exit, so the file is written fresh each run.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .ports import LOOPBACK, free_port
from .process import PeerProcess
from .trace import SipRecord, cut_one_message

LINPHONEC = shutil.which("linphonec")


@dataclass
class LinphonecConfig:
    directory: Path
    sip_port: int = field(default_factory=free_port)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    rtp_port: int = field(default_factory=lambda: free_port(span=4))
    # PEM of the CA that signed the TLS server certificate (the self-signed cert itself)
    root_ca: Path | None = None

    def write(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "home" / ".local" / "share" / "linphone").mkdir(
            parents=True, exist_ok=True
        )
        ports = {
            "udp": (self.sip_port, 0, 0),
            "tcp": (0, self.sip_port, 0),
            "tls": (0, 0, self.sip_port),
        }
        udp, tcp, tls = ports[self.transport]
        sip = [
            f"sip_port={udp}",
            f"sip_tcp_port={tcp}",
            f"sip_tls_port={tls}",
            f"bind_address={LOOPBACK}",
            "guess_hostname=0",
            "register_only_when_upnp_is_ok=0",
            "inc_timeout=30",
        ]
        if self.root_ca is not None:
            sip += [f"root_ca={self.root_ca}", "verify_server_certs=1", "verify_server_cn=1"]
        rc = "[sip]\n" + "\n".join(sip) + f"\n[rtp]\naudio_rtp_port={self.rtp_port}\n"
        rc += "[video]\nenabled=0\n"
        (self.directory / "linphonerc").write_text(rc)
        return self.directory


_LOG_ENTRY = re.compile(
    r"(?:received \[\d+\] new bytes from|message sent to) \[(?P<transport>\w+)://(?P<host>[^:\]]+):(?P<port>\d+)\][^\n]*\n",
)


class Linphonec(PeerProcess):
    def __init__(self, config: LinphonecConfig) -> None:
        if LINPHONEC is None:
            raise RuntimeError("linphonec not installed (Debian package linphone-cli)")
        self.config = config
        directory = config.write()
        super().__init__(
            [LINPHONEC, "-a", "-c", str(directory / "linphonerc"), "-d", "6"],
            log_path=directory / "linphonec.log",
            cwd=directory,
            env={"HOME": str(directory / "home"), "PATH": "/usr/bin:/bin"},
            stdin_pipe=True,
        )

    async def start(self) -> None:
        await super().start()
        await self.send_line("soundcard use files")

    async def register(self, user: str, registrar: str, password: str, timeout: float = 10) -> None:
        """Register `sip:user@registrar` with digest credentials; waits for RegistrationOk."""
        suffix = "" if self.config.transport == "udp" else f";transport={self.config.transport}"
        await self.send_line(f"register sip:{user}@{registrar} sip:{registrar}{suffix} {password}")
        await self.wait_for(r"to \[LinphoneRegistrationOk\]", timeout)

    async def quit(self, timeout: float = 8) -> int:
        if self.returncode is None:
            try:
                await self.send_line("quit")
                return await self.wait(timeout)
            except (TimeoutError, ConnectionResetError, BrokenPipeError):
                pass
        return await self.stop()

    def messages(self) -> list[SipRecord]:
        out = self.output
        records = []
        for match in _LOG_ENTRY.finditer(out):
            text = cut_one_message(out[match.end() :])
            if not text.strip() or not re.match(r"^(SIP/2\.0 \d{3}|[A-Z]+ \S+ SIP/2\.0)", text):
                continue
            host = LOOPBACK if match["host"] == "localhost" else match["host"]  # TLS goes by name
            peer = (host, int(match["port"]))
            me = (LOOPBACK, self.config.sip_port)
            received = match.group(0).startswith("received")
            records.append(
                SipRecord(
                    direction="received" if received else "sent",
                    transport=match["transport"].upper(),
                    text=text,
                    src=peer if received else me,
                    dst=me if received else peer,
                )
            )
        return records
