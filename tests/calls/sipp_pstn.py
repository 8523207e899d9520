"""SIPp as the PSTN caller: a UAC scenario written per test. The digits it keys come from
Debian's RFC 2833 pcaps (``/usr/share/sip-tester/dtmf_2833_<d>.pcap``), chained into one pcap
per entry; PCMA speech (``g711a.pcap``) follows once the caller is in the meeting.

Why chain rather than play each digit pcap in turn: every copy of ``dtmf_2833_1.pcap`` carries
the same RTP timestamp, and a receiver rightly drops an event whose timestamp it has already
seen end (RFC 4733 §2.5.1.4 — retransmitted final packets), so "1 ... 1" would lose the
second 1. The chained copy keeps Debian's packets byte for byte except sequence number and
timestamp, which move on per key press as a real phone's would.
"""

from __future__ import annotations

import struct
from pathlib import Path

PCAPS = Path("/usr/share/sip-tester")
PCAP_NAME = {"#": "pound", "*": "star"}

HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="pstn_dial_in">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "[caller_name]" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      User-Agent: SIPp-pstn
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=pstn 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "[caller_name]" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="600"/>
"""

TAIL = """
  <pause milliseconds="{hold_ms}"/>
  <nop><action><exec play_pcap_audio="{pcaps}/g711a.pcap"/></action></nop>
  <pause milliseconds="{talk_ms}"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "[caller_name]" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def _read_pcap(path: Path) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(global header, [(record header, frame)])."""
    data = path.read_bytes()
    out, offset = [], 24
    while offset + 16 <= len(data):
        incl = struct.unpack_from("<I", data, offset + 8)[0]
        out.append((data[offset : offset + 16], data[offset + 16 : offset + 16 + incl]))
        offset += 16 + incl
    return data[:24], out


def chain_digits(digits: str, target: Path, *, start: int, gap_ms: int = 250) -> int:
    """One pcap keying ``digits`` (Ethernet/IPv4/UDP as in Debian's files); returns the next
    free event number (``start`` .. keeps timestamps unique across a call)."""
    header, records, seq = b"", [], 1000 + start * 40
    clock = 0.0
    for n, d in enumerate(digits, start=start):
        header, packets = _read_pcap(PCAPS / f"dtmf_2833_{PCAP_NAME.get(d, d)}.pcap")
        first = None
        for rec, frame in packets:
            sec, usec = struct.unpack_from("<II", rec, 0)
            t = sec + usec / 1e6
            first = t if first is None else first
            ip = 14
            udp = ip + (frame[ip] & 0x0F) * 4
            rtp = bytearray(frame[udp + 8 :])
            struct.pack_into("!H", rtp, 2, seq & 0xFFFF)
            struct.pack_into("!I", rtp, 4, (8000 * 10 * (n + 1)) & 0xFFFFFFFF)
            seq += 1
            out = bytearray(frame[: udp + 8]) + rtp
            struct.pack_into("!H", out, udp + 6, 0)  # UDP checksum: none (IPv4 allows it)
            when = clock + (t - first)
            rec_out = struct.pack("<IIII", int(when), int((when % 1) * 1e6), len(out), len(out))
            records.append(rec_out + bytes(out))
        clock = when + (200 + gap_ms) / 1000 - 0.2
    target.write_bytes(header + b"".join(records))
    return start + len(digits)


def write_scenario(path: Path, entries: list[str], *, hold_ms: int = 1500,
                   talk_ms: int = 3000) -> Path:  # fmt: skip
    """Key each entry (e.g. ``"4815162342#"``, then ``"#"``) with a pause between them."""
    body, number = [], 0
    for i, entry in enumerate(entries):
        pcap = path.with_name(f"{path.stem}-keys{i}.pcap")
        number = chain_digits(entry, pcap, start=number)
        length_ms = len(entry) * 450 + 200
        body.append(
            f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
            f'  <pause milliseconds="{length_ms + 700}"/>\n'
        )
    path.write_text(HEAD + "".join(body) + TAIL.format(hold_ms=hold_ms, talk_ms=talk_ms,
                                                       pcaps=PCAPS))  # fmt: skip
    return path
