"""Benchmark: µs per parse of a typical INVITE and 200 OK, with and without typed views.

.venv/bin/python bench/sip_parse.py
"""

from __future__ import annotations

import time

from dialbridge.sip.message import parse_message
from dialbridge.sip.sdp import parse_sdp

SDP = (
    b"v=0\r\no=trunk 2890844526 2890844526 IN IP4 203.0.113.5\r\ns=-\r\n"
    b"c=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio 49170 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
INVITE = (
    b"INVITE sip:+4930123456@dialbridge.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:+4930123456@dialbridge.example.com>\r\n"
    b'From: "Caller" <sip:+4917012345@trunk.example.net>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@203.0.113.5\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:+4917012345@203.0.113.5:5060>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO\r\n"
    b"Supported: timer, replaces\r\n"
    b"User-Agent: ExampleTrunk/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: %d\r\n\r\n" % len(SDP)
) + SDP
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKnashds8;rport=5060;received=10.0.0.2\r\n"
    b"To: <sip:room@meet.example.com>;tag=a6c85cf\r\n"
    b"From: <sip:dialbridge@10.0.0.2>;tag=1928301774\r\n"
    b"Call-ID: 843817637684230@10.0.0.2\r\n"
    b"CSeq: 2 INVITE\r\n"
    b"Contact: <sip:jigasi@10.0.0.5:5060;transport=udp>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def per_call_us(fn, rounds: int = 5, number: int = 2000) -> float:
    """Best of ``rounds`` runs of ``number`` calls, in µs of CPU time per call.

    CPU time (not wall time) so that other processes on a shared machine distort less.
    """
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - start) / number)
    return best * 1e6


def typed(data: bytes):
    msg = parse_message(data)
    return msg.vias, msg.from_addr, msg.to_addr, msg.cseq, msg.call_id, msg.contacts


def fresh_invites(count: int) -> list[bytes]:
    """INVITEs that differ in branch, tag and Call-ID, as new calls do (no parse-cache hits)."""
    return [
        INVITE.replace(b"z9hG4bK776asdhds", b"z9hG4bK%08d" % i)
        .replace(b"tag=1928301774", b"tag=%010d" % i)
        .replace(b"a84b4c76e66710", b"%014d" % i)
        for i in range(count)
    ]


def main() -> None:
    invite = parse_message(INVITE)
    fresh = fresh_invites(20000)
    position = iter(range(10**9))

    def parse_fresh() -> None:
        typed(fresh[next(position) % len(fresh)])

    ok = parse_message(OK)
    rows = [
        (f"parse INVITE ({len(INVITE)} B)", lambda: parse_message(INVITE)),
        ("parse INVITE + typed Via/From/To/CSeq/Contact", lambda: typed(INVITE)),
        ("  same, every INVITE a new call (cold caches)", parse_fresh),
        (f"parse 200 OK ({len(OK)} B)", lambda: parse_message(OK)),
        ("parse 200 OK + typed views", lambda: typed(OK)),
        ("serialise INVITE", invite.to_bytes),
        ("serialise 200 OK", ok.to_bytes),
        (f"parse SDP ({len(SDP)} B)", lambda: parse_sdp(SDP)),
    ]
    try:
        from sipmessage import Message  # the library we evaluated, for scale on this machine
    except ImportError:
        pass
    else:
        rows.append(
            ("sipmessage 0.7.1 Message.parse(INVITE), for scale", lambda: Message.parse(INVITE))
        )
    for label, fn in rows:
        print(f"{label:55s} {per_call_us(fn):8.1f} µs")


if __name__ == "__main__":
    main()
