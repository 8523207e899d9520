"""SIP messages as peers log them, and the parsers for those logs.

SIPp's `-trace_msg` file is parsed in `sipp`; baresip's `-s` trace is parsed here and tcpdump
captures in `capture`; all of them produce `SipRecord`s so tests assert on one shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SipRecord:
    """One SIP message a peer logged or a capture saw. `direction` is seen from the peer that
    logged it; `src`/`dst` are filled when the log names the addresses (baresip, tcpdump)."""

    direction: Literal["sent", "received"]
    transport: str
    text: str
    # wall-clock time SIPp logged the message at (seconds since the epoch, local time zone)
    at: float = 0.0
    src: tuple[str, int] | None = None
    dst: tuple[str, int] | None = None

    @property
    def start_line(self) -> str:
        return self.text.split("\r\n", 1)[0].split("\n", 1)[0].strip()

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str | None:
        return self.start_line.split(" ", 1)[0] if self.is_request else None

    @property
    def status(self) -> int | None:
        return None if self.is_request else int(self.start_line.split(" ")[1])

    @property
    def headers(self) -> list[tuple[str, str]]:
        head = re.split(r"\r?\n\r?\n", self.text, maxsplit=1)[0]
        out: list[tuple[str, str]] = []
        for line in re.split(r"\r?\n", head)[1:]:
            if line[:1] in (" ", "\t") and out:
                name, value = out[-1]
                out[-1] = (name, value + " " + line.strip())
            elif ":" in line:
                name, value = line.split(":", 1)
                out.append((name.strip(), value.strip()))
        return out

    def header(self, name: str) -> str | None:
        """First value of a header, matching long and compact forms (RFC 3261 §7.3.3)."""
        names = {name.lower(), _COMPACT.get(name.lower(), name.lower())}
        for key, value in self.headers:
            if key.lower() in names:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        names = {name.lower(), _COMPACT.get(name.lower(), name.lower())}
        return [v for k, v in self.headers if k.lower() in names]

    @property
    def cseq_method(self) -> str | None:
        cseq = self.header("CSeq")
        return cseq.split()[1] if cseq else None

    @property
    def body(self) -> str:
        parts = re.split(r"\r?\n\r?\n", self.text, maxsplit=1)
        return parts[1] if len(parts) == 2 else ""

    def describe(self) -> str:
        """Short form for asserting sequences: `>INVITE`, `<180`, `<200 INVITE`."""
        arrow = ">" if self.direction == "sent" else "<"
        if self.is_request:
            return f"{arrow}{self.method}"
        return f"{arrow}{self.status} {self.cseq_method}"


_COMPACT = {
    "via": "v",
    "from": "f",
    "to": "t",
    "call-id": "i",
    "contact": "m",
    "content-length": "l",
    "content-type": "c",
    "supported": "k",
    "subject": "s",
}


_BARESIP_HEADER = re.compile(
    r"^#\r?\n(?P<transport>UDP|TCP|TLS|WS|WSS) (?P<src>[0-9.]+):(?P<sport>\d+) -> "
    r"(?P<dst>[0-9.]+):(?P<dport>\d+)\r?\n",
    re.M,
)


def parse_baresip_trace(output: str, local_port: int) -> list[SipRecord]:
    """Messages from baresip's `-s` SIP trace (ANSI colours already removed).

    Each entry reads `#`, `UDP 127.0.0.1:5071 -> 127.0.0.1:5060`, then the message. `direction`
    is "sent" when the source port is baresip's own SIP port.
    """
    records: list[SipRecord] = []
    heads = list(_BARESIP_HEADER.finditer(output))
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(output)
        message = cut_one_message(output[head.end() : end])
        if not message.strip():
            continue
        src = (head["src"], int(head["sport"]))
        dst = (head["dst"], int(head["dport"]))
        records.append(
            SipRecord(
                direction="sent" if src[1] == local_port else "received",
                transport=head["transport"],
                text=message,
                src=src,
                dst=dst,
            )
        )
    return records


def cut_one_message(text: str) -> str:
    """The first SIP message in `text`: head, blank line, Content-Length bytes of body."""
    lines = re.split(r"\r?\n", text)
    head: list[str] = []
    for i, line in enumerate(lines):
        if line == "":
            length = 0
            for h in head:
                name, _, value = h.partition(":")
                if name.strip().lower() in ("content-length", "l"):
                    length = int(value.strip() or 0)
            body = "\n".join(lines[i + 1 :])[:length] if length else ""
            return "\n".join(head) + "\n\n" + body
        head.append(line)
    return "\n".join(head) + "\n"
