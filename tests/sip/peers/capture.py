"""Packet capture on the loopback interface with tcpdump, read back without any pcap library.

Used where a test must prove *which socket* a message left from (the registrar-flow rule of RFC
5626 §3 / Jigasi's "same IP:port as the REGISTER" rule), independently of what any SIP peer logs.
The capture is bounded by a BPF port filter, so it only ever sees the test's own ports.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import struct
from dataclasses import dataclass
from pathlib import Path

from .process import PeerProcess
from .trace import SipRecord, cut_one_message

TCPDUMP = shutil.which("tcpdump")


@dataclass(frozen=True)
class Packet:
    protocol: str  # "UDP" or "TCP"
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


class LoopbackCapture(PeerProcess):
    def __init__(self, ports: list[int], workdir: Path) -> None:
        if TCPDUMP is None:
            raise RuntimeError("tcpdump not installed")
        self.pcap = workdir / f"lo-{'-'.join(map(str, ports))}.pcap"
        bpf = " or ".join(f"port {p}" for p in ports)
        super().__init__(
            [
                TCPDUMP,
                "-i",
                "lo",
                "-n",
                "-U",
                "--immediate-mode",
                "-s",
                "0",
                "-w",
                str(self.pcap),
                bpf,
            ],
            log_path=workdir / "tcpdump.log",
        )

    async def start(self) -> None:
        await super().start()
        await self.wait_for(r"listening on lo", 5)

    async def finish(self) -> list[Packet]:
        await asyncio.sleep(0.2)  # let the last packets reach the buffer (-U flushes per packet)
        await self.stop(sig=signal.SIGINT)
        return read_pcap(self.pcap)


def read_pcap(path: Path) -> list[Packet]:
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    offset, packets = 24, []
    while offset + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        if linktype == 1:  # Ethernet (what Linux gives for lo)
            if frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked
            ip = frame[16:]
        else:
            ip = frame
        packet = _parse_ipv4(ip)
        if packet is not None:
            packets.append(packet)
    return packets


def _parse_ipv4(ip: bytes) -> Packet | None:
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    header_len = (ip[0] & 0x0F) * 4
    total_len = struct.unpack("!H", ip[2:4])[0]
    proto = ip[9]
    src = ".".join(map(str, ip[12:16]))
    dst = ".".join(map(str, ip[16:20]))
    segment = ip[header_len:total_len]
    if proto == 17 and len(segment) >= 8:
        sport, dport = struct.unpack("!HH", segment[:4])
        return Packet("UDP", (src, sport), (dst, dport), segment[8:])
    if proto == 6 and len(segment) >= 20:
        sport, dport = struct.unpack("!HH", segment[:4])
        data_offset = (segment[12] >> 4) * 4
        return Packet("TCP", (src, sport), (dst, dport), segment[data_offset:])
    return None


def sip_messages(packets: list[Packet]) -> list[SipRecord]:
    """SIP messages in the capture: one per UDP datagram; TCP payloads joined per direction and
    split on Content-Length (enough for the short, unfragmented exchanges the tests make).
    TLS payloads are opaque and yield nothing."""
    records: list[SipRecord] = []
    streams: dict[tuple[tuple[str, int], tuple[str, int]], bytearray] = {}
    for packet in packets:
        if packet.protocol == "UDP":
            text = packet.payload.decode("utf-8", "replace")
            if text.strip():
                records.append(
                    SipRecord("sent", "UDP", cut_one_message(text), src=packet.src, dst=packet.dst)
                )
        elif packet.payload:
            streams.setdefault((packet.src, packet.dst), bytearray()).extend(packet.payload)
    for (src, dst), buffer in streams.items():
        text = buffer.decode("utf-8", "replace")
        while text.strip():
            text = text.lstrip("\r\n")
            if not (text.startswith("SIP/2.0 ") or " SIP/2.0" in text.split("\n", 1)[0]):
                break
            message = cut_one_message(text)
            records.append(SipRecord("sent", "TCP", message, src=src, dst=dst))
            head, _, rest = text.replace("\r\n", "\n").partition("\n\n")
            length = 0
            for line in head.split("\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() in ("content-length", "l"):
                    length = int(value.strip() or 0)
            text = rest[length:]
    return records
