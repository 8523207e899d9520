"""SDP: parse and build session descriptions (RFC 4566/8866) and the offer/answer model (RFC 3264).

Theory of operation
-------------------
:class:`SessionDescription` and :class:`MediaDescription` are plain data. The attributes we act on
(rtpmap, fmtp, ptime, maxptime, extmap, direction, rtcp, rtcp-mux) have typed fields; every other
attribute is kept, in order, in ``attributes`` so that nothing is lost on a round trip.

The offer/answer helpers are pure functions of (remote SDP, our capabilities):

* :func:`create_offer` — what we put in an INVITE (or in a 200 OK to an offerless INVITE).
* :func:`create_answer` — our answer to a remote offer (RFC 3264 §6): same m-lines in the same
  order, the offerer's payload type numbers and extmap ids, port 0 for what we do not take.
* :func:`negotiate` — once an offer and its answer are known (whoever made them), what the media
  engine needs: remote address, payload types, telephone-event, extmap ids, direction.

Which SDP is an offer and which is an answer (INVITE/200, or 200/ACK for an offerless INVITE) is
the dialog layer's business; this module is symmetric.

Errors: malformed SDP from the peer raises :class:`SdpParseError` (answer 400); an SDP that is
well-formed but cannot be negotiated raises :class:`OfferAnswerError` (answer 488, RFC 3261
§21.4.26). Both are remote errors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "SdpParseError",
    "OfferAnswerError",
    "Origin",
    "Connection",
    "RtpMap",
    "Extmap",
    "Rtcp",
    "MediaDescription",
    "SessionDescription",
    "Codec",
    "LocalMedia",
    "NegotiatedAudio",
    "create_offer",
    "create_answer",
    "negotiate",
    "answer_direction",
    "with_version",
    "parse_sdp",
    "SSRC_AUDIO_LEVEL",
    "CSRC_AUDIO_LEVEL",
    "OPUS",
    "PCMU",
    "PCMA",
    "G722",
    "TELEPHONE_EVENT",
    "DIRECTIONS",
]

#: RFC 6464 client-to-mixer audio level; Jigasi/jicofo expect it at id 1.
SSRC_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
#: RFC 6465 mixer-to-client audio level.
CSRC_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:csrc-audio-level"

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
MAX_LINES = 2048


class SdpParseError(ValueError):
    """The peer's SDP is malformed (a remote error; answer 400)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class OfferAnswerError(ValueError):
    """The peer's SDP is well-formed but nothing in it can be accepted (answer 488)."""

    def __init__(self, reason: str, status: int = 488) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# ---------------------------------------------------------------------------------------------
# Data (RFC 4566 §5)
# ---------------------------------------------------------------------------------------------


@dataclass
class Origin:
    """o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address> (§5.2)."""

    username: str = "-"
    session_id: int = 0
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass
class Connection:
    """c=<nettype> <addrtype> <connection-address> (§5.7)."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True)
class RtpMap:
    """a=rtpmap:<payload type> <encoding name>/<clock rate>[/<encoding parameters>] (§6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        channels = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{channels}"


@dataclass(frozen=True)
class Extmap:
    """a=extmap:<id>[/<direction>] <URI> [<extension attributes>] (RFC 8285 §8)."""

    id: int
    uri: str
    direction: str | None = None
    attributes: str | None = None

    def __str__(self) -> str:
        direction = f"/{self.direction}" if self.direction else ""
        attributes = f" {self.attributes}" if self.attributes else ""
        return f"{self.id}{direction} {self.uri}{attributes}"


@dataclass(frozen=True)
class Rtcp:
    """a=rtcp:<port> [<nettype> <addrtype> <connection-address>] (RFC 3605)."""

    port: int
    connection: Connection | None = None

    def __str__(self) -> str:
        return f"{self.port} {self.connection}" if self.connection else str(self.port)


@dataclass
class MediaDescription:
    """One m= section (§5.14) with the attributes we use typed and the rest kept in order."""

    media: str = "audio"
    port: int = 0
    proto: str = "RTP/AVP"
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None
    title: str | None = None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    rtpmaps: dict[int, RtpMap] = field(default_factory=dict)
    fmtps: dict[str, str] = field(default_factory=dict)
    ptime: float | None = None
    maxptime: float | None = None
    extmaps: list[Extmap] = field(default_factory=list)
    direction: str | None = None
    rtcp: Rtcp | None = None
    rtcp_mux: bool = False
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto.upper()

    @property
    def payload_types(self) -> list[int]:
        return [int(f) for f in self.formats] if self.is_rtp else []

    def rtpmap_for(self, payload_type: int) -> RtpMap | None:
        """The rtpmap of a payload type, falling back to the static table of RFC 3551 §6."""
        found = self.rtpmaps.get(payload_type)
        if found is not None:
            return found
        static = _STATIC_PAYLOAD_TYPES.get(payload_type)
        if static is None:
            return None
        return RtpMap(payload_type, *static)

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}".rstrip()]
        if self.title is not None:
            out.append(f"i={self.title}")
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"b={b}" for b in self.bandwidths)
        for fmt in self.formats:
            pt = int(fmt) if fmt.isdigit() else None
            if pt is not None and pt in self.rtpmaps:
                out.append(f"a=rtpmap:{self.rtpmaps[pt]}")
            if fmt in self.fmtps:
                out.append(f"a=fmtp:{fmt} {self.fmtps[fmt]}")
        # rtpmap/fmtp for formats not listed on the m= line (kept from a parsed SDP).
        for pt, rtpmap in self.rtpmaps.items():
            if str(pt) not in self.formats:
                out.append(f"a=rtpmap:{rtpmap}")
        for fmt, params in self.fmtps.items():
            if fmt not in self.formats:
                out.append(f"a=fmtp:{fmt} {params}")
        if self.ptime is not None:
            out.append(f"a=ptime:{self.ptime:g}")
        if self.maxptime is not None:
            out.append(f"a=maxptime:{self.maxptime:g}")
        out.extend(f"a=extmap:{e}" for e in self.extmaps)
        if self.rtcp is not None:
            out.append(f"a=rtcp:{self.rtcp}")
        if self.rtcp_mux:
            out.append("a=rtcp-mux")
        out.extend(_attribute_line(name, value) for name, value in self.attributes)
        if self.direction is not None:
            out.append(f"a={self.direction}")
        return out


@dataclass
class SessionDescription:
    """A whole SDP (§5): session-level fields, then the media descriptions in order."""

    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    connection: Connection | None = None
    timing: tuple[int, int] = (0, 0)
    media: list[MediaDescription] = field(default_factory=list)
    version: int = 0
    information: str | None = None
    bandwidths: list[str] = field(default_factory=list)
    extmaps: list[Extmap] = field(default_factory=list)
    direction: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        return parse_sdp(data)

    def to_bytes(self) -> bytes:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name or ' '}"]
        if self.information is not None:
            lines.append(f"i={self.information}")
        lines.extend(f"{kind}={value}" for kind, value in self.other_lines)
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.extend(f"b={b}" for b in self.bandwidths)
        lines.append(f"t={self.timing[0]} {self.timing[1]}")
        lines.extend(f"a=extmap:{e}" for e in self.extmaps)
        lines.extend(_attribute_line(name, value) for name, value in self.attributes)
        if self.direction is not None:
            lines.append(f"a={self.direction}")
        for media in self.media:
            lines.extend(media.lines())
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def media_direction(self, media: MediaDescription) -> str:
        """Direction of a stream: its own attribute, else the session's, else sendrecv (§6)."""
        return media.direction or self.direction or "sendrecv"

    def media_connection(self, media: MediaDescription) -> Connection | None:
        return media.connection or self.connection


def _attribute_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


# RFC 3551 §6 table 4: static audio payload types (encoding, clock rate, channels).
_STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int, int | None]] = {
    0: ("PCMU", 8000, None),
    3: ("GSM", 8000, None),
    4: ("G723", 8000, None),
    5: ("DVI4", 8000, None),
    6: ("DVI4", 16000, None),
    7: ("LPC", 8000, None),
    8: ("PCMA", 8000, None),
    9: ("G722", 8000, None),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, None),
    12: ("QCELP", 8000, None),
    13: ("CN", 8000, None),
    14: ("MPA", 90000, None),
    15: ("G728", 8000, None),
    16: ("DVI4", 11025, None),
    17: ("DVI4", 22050, None),
    18: ("G729", 8000, None),
}


# ---------------------------------------------------------------------------------------------
# Parsing (RFC 4566 §5, §6, §9 grammar)
# ---------------------------------------------------------------------------------------------

_LINE_RE = re.compile(r"([a-z])=(.*)\Z", re.S)
_TOKEN_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`{|}~]+\Z")


def _int(text: str, what: str, *, low: int = 0, high: int | None = None) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise SdpParseError(f"Bad {what}: {text[:20]!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        raise SdpParseError(f"{what} out of range: {value}")
    return value


def _number(text: str, what: str) -> float:
    if not re.fullmatch(r"\d{1,9}(\.\d{1,9})?", text):
        raise SdpParseError(f"Bad {what}: {text[:20]!r}")
    return float(text)


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpParseError("Bad c= line")
    nettype, addrtype, address = parts
    return Connection(address=address, addrtype=addrtype, nettype=nettype)


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpParseError("Bad o= line")
    username, sess_id, sess_version, nettype, addrtype, address = parts
    return Origin(
        username=username,
        session_id=_int(sess_id, "o= session id"),
        session_version=_int(sess_version, "o= session version"),
        nettype=nettype,
        addrtype=addrtype,
        address=address,
    )


def _parse_media_line(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpParseError("Bad m= line")
    media, port_text, proto, *formats = parts
    port_part, slash, count_part = port_text.partition("/")
    port = _int(port_part, "m= port", high=65535)
    port_count = _int(count_part, "m= port count", low=1) if slash else None
    description = MediaDescription(
        media=media, port=port, proto=proto, formats=list(formats), port_count=port_count
    )
    if description.is_rtp:
        for fmt in formats:
            _int(fmt, "payload type", high=127)
    return description


def _parse_rtpmap(value: str) -> RtpMap:
    pt_text, _, spec = value.partition(" ")
    parts = spec.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise SdpParseError("Bad rtpmap")
    channels = _int(parts[2], "rtpmap channels", low=1, high=255) if len(parts) == 3 else None
    return RtpMap(
        payload_type=_int(pt_text, "rtpmap payload type", high=127),
        encoding=parts[0],
        clock_rate=_int(parts[1], "rtpmap clock rate", low=1),
        channels=channels,
    )


def _parse_extmap(value: str) -> Extmap:
    head, _, rest = value.partition(" ")
    rest = rest.strip()
    if not rest:
        raise SdpParseError("Bad extmap")
    id_text, slash, direction = head.partition("/")
    # RFC 8285 §5: ids 1-14 (one-byte header), 15 reserved, up to 255 (two-byte header).
    ext_id = _int(id_text, "extmap id", low=1, high=255)
    if slash and direction not in DIRECTIONS:
        raise SdpParseError("Bad extmap direction")
    uri, _, attributes = rest.partition(" ")
    return Extmap(ext_id, uri, direction if slash else None, attributes.strip() or None)


def _parse_rtcp(value: str) -> Rtcp:
    parts = value.split()
    if not parts:
        raise SdpParseError("Bad rtcp")
    port = _int(parts[0], "rtcp port", high=65535)
    if len(parts) == 1:
        return Rtcp(port)
    if len(parts) != 4:
        raise SdpParseError("Bad rtcp")
    return Rtcp(port, _parse_connection(" ".join(parts[1:])))


def _apply_attribute(
    target: MediaDescription | SessionDescription, name: str, value: str | None
) -> None:
    if name in DIRECTIONS and value is None:
        target.direction = name
        return
    if name == "extmap" and value is not None:
        target.extmaps.append(_parse_extmap(value))
        return
    if isinstance(target, MediaDescription) and value is not None:
        if name == "rtpmap":
            try:
                rtpmap = _parse_rtpmap(value)
            except SdpParseError:
                # Seen in the wild (and in RFC 4475 bodies: "a=rtpmap:31 LPC"): keep it as an
                # opaque attribute; the format then simply has no usable rtpmap.
                target.attributes.append((name, value))
                return
            target.rtpmaps[rtpmap.payload_type] = rtpmap
            return
        if name == "fmtp":
            fmt, _, params = value.partition(" ")
            if not fmt:
                raise SdpParseError("Bad fmtp")
            target.fmtps[fmt] = params.strip()
            return
        if name == "ptime":
            target.ptime = _number(value, "ptime")
            return
        if name == "maxptime":
            target.maxptime = _number(value, "maxptime")
            return
        if name == "rtcp":
            target.rtcp = _parse_rtcp(value)
            return
    if isinstance(target, MediaDescription) and name == "rtcp-mux" and value is None:
        target.rtcp_mux = True
        return
    target.attributes.append((name, value))


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body. Raises :class:`SdpParseError` for anything malformed, nothing else."""
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise SdpParseError("Empty SDP")
    if len(lines) > MAX_LINES:
        raise SdpParseError("Too many SDP lines")
    session = SessionDescription()
    seen_origin = False
    current: MediaDescription | None = None
    for index, line in enumerate(lines):
        match = _LINE_RE.match(line)
        if not match:
            raise SdpParseError(f"Bad SDP line {index + 1}: {line[:40]!r}")
        kind, value = match.groups()
        if index == 0:
            if kind != "v" or value.strip() != "0":
                raise SdpParseError("SDP must start with v=0")  # RFC 4566 §5.1
            continue
        if kind == "v":
            raise SdpParseError("Repeated v= line")
        if kind == "m":
            current = _parse_media_line(value)
            session.media.append(current)
        elif kind == "a":
            name, colon, attr_value = value.partition(":")
            if not name or not _TOKEN_RE.match(name):
                raise SdpParseError(f"Bad attribute {value[:40]!r}")
            _apply_attribute(current or session, name, attr_value if colon else None)
        elif kind == "c":
            connection = _parse_connection(value)
            if current is None:
                session.connection = connection
            else:
                current.connection = connection
        elif kind == "b":
            (current or session).bandwidths.append(value)
        elif current is not None:
            if kind == "i":
                current.title = value
            elif kind != "k":  # k= (§5.12) is obsolete; anything else has no place here
                raise SdpParseError(f"Unexpected {kind}= in media section")
        elif kind == "o":
            if seen_origin:
                raise SdpParseError("Repeated o= line")
            session.origin = _parse_origin(value)
            seen_origin = True
        elif kind == "s":
            session.session_name = value.strip() or "-"
        elif kind == "i":
            session.information = value
        elif kind == "t":
            parts = value.split()
            if len(parts) != 2:
                raise SdpParseError("Bad t= line")
            session.timing = (_int(parts[0], "t= start"), _int(parts[1], "t= stop"))
        else:
            # u= e= p= r= z= k=: carried, not interpreted.
            session.other_lines.append((kind, value))
    if not seen_origin:
        raise SdpParseError("Missing o= line")
    return session


# ---------------------------------------------------------------------------------------------
# Offer/answer (RFC 3264)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """An audio format we can send and receive.

    ``payload_type`` is what we use in our own offers (static types keep their RFC 3551 number;
    dynamic ones get one from 96 up when ``None``). In answers the offerer's number wins.
    """

    encoding: str
    clock_rate: int
    channels: int | None = None
    fmtp: str | None = None
    payload_type: int | None = None

    def matches(self, rtpmap: RtpMap) -> bool:
        return (
            rtpmap.encoding.lower() == self.encoding.lower()
            and rtpmap.clock_rate == self.clock_rate
            and (rtpmap.channels or 1) == (self.channels or 1)
        )


OPUS = Codec("opus", 48000, 2, fmtp="useinbandfec=1", payload_type=111)
PCMU = Codec("PCMU", 8000, payload_type=0)
PCMA = Codec("PCMA", 8000, payload_type=8)
G722 = Codec("G722", 8000, payload_type=9)
#: RFC 4733 named telephone events; 0-15 are the DTMF digits.
TELEPHONE_EVENT = Codec("telephone-event", 8000, fmtp="0-16", payload_type=101)


@dataclass(frozen=True)
class LocalMedia:
    """Our side of an audio stream: where we listen and what we can do."""

    address: str
    port: int
    codecs: Sequence[Codec] = (OPUS,)
    telephone_event: bool = True
    telephone_event_payload_type: int = 101
    extmap_uris: Sequence[str] = (SSRC_AUDIO_LEVEL,)
    ptime: int | None = 20
    direction: str = "sendrecv"
    rtcp_mux: bool = False
    username: str = "dialbridge"
    session_id: int = 0
    session_version: int = 0
    session_name: str = "-"

    @property
    def addrtype(self) -> str:
        return "IP6" if ":" in self.address else "IP4"


@dataclass(frozen=True)
class NegotiatedAudio:
    """What the media engine needs once offer and answer are both known."""

    remote_address: str
    remote_port: int
    remote_rtcp_port: int
    payload_type: int  # what we send with
    codec: RtpMap  # the codec of payload_type
    fmtp: str | None
    receive_payload_types: dict[int, RtpMap]  # what the peer may send us
    telephone_event_payload_type: int | None
    extmap_ids: dict[str, int]  # header extension URI -> id both sides use
    direction: str  # from our point of view
    remote_ptime: float | None
    rtcp_mux: bool

    @property
    def sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def answer_direction(offered: str, local: str = "sendrecv") -> str:
    """RFC 3264 §6.1: we send only if the offerer receives, and receive only if it sends."""
    we_send = offered in ("sendrecv", "recvonly") and local in ("sendrecv", "sendonly")
    we_recv = offered in ("sendrecv", "sendonly") and local in ("sendrecv", "recvonly")
    return _DIRECTION_OF[(we_send, we_recv)]


_DIRECTION_OF = {
    (True, True): "sendrecv",
    (True, False): "sendonly",
    (False, True): "recvonly",
    (False, False): "inactive",
}
_REVERSE = {"sendonly": "recvonly", "recvonly": "sendonly"}


def _session_shell(local: LocalMedia) -> SessionDescription:
    return SessionDescription(
        origin=Origin(
            username=local.username,
            session_id=local.session_id,
            session_version=local.session_version,
            addrtype=local.addrtype,
            address=local.address,
        ),
        session_name=local.session_name,
        connection=Connection(local.address, local.addrtype),
    )


def _direction_attribute(direction: str) -> str | None:
    # Jigasi and most UAs write a direction only when it is not the default.
    return None if direction == "sendrecv" else direction


def create_offer(local: LocalMedia) -> SessionDescription:
    """Our offer: one audio stream, codecs in preference order, telephone-event, extmaps.

    Header extensions get ids from 1 in the order of ``local.extmap_uris``, so the RFC 6464
    ``ssrc-audio-level`` we put first is at id 1, where Jigasi/jicofo expect it.
    """
    media = MediaDescription(media="audio", port=local.port, proto="RTP/AVP")
    used: set[int] = set()
    next_dynamic = 96
    for codec in local.codecs:
        pt = codec.payload_type
        if pt is None or pt in used:
            while next_dynamic in used or next_dynamic == local.telephone_event_payload_type:
                next_dynamic += 1
            pt = next_dynamic
        used.add(pt)
        media.formats.append(str(pt))
        media.rtpmaps[pt] = RtpMap(pt, codec.encoding, codec.clock_rate, codec.channels)
        if codec.fmtp:
            media.fmtps[str(pt)] = codec.fmtp
    if local.telephone_event:
        pt = local.telephone_event_payload_type
        if pt in used:
            raise ValueError("telephone-event payload type collides with a codec")
        media.formats.append(str(pt))
        media.rtpmaps[pt] = RtpMap(pt, "telephone-event", 8000)
        media.fmtps[str(pt)] = TELEPHONE_EVENT.fmtp or "0-16"
    media.ptime = local.ptime
    media.extmaps = [Extmap(i, uri) for i, uri in enumerate(local.extmap_uris, start=1)]
    media.rtcp_mux = local.rtcp_mux
    media.direction = _direction_attribute(local.direction)
    session = _session_shell(local)
    session.media.append(media)
    return session


def _rejected(offered: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream has port 0 and still lists the offered formats.
    return MediaDescription(
        media=offered.media, port=0, proto=offered.proto, formats=list(offered.formats) or ["0"]
    )


def _is_plain_rtp(media: MediaDescription) -> bool:
    return media.proto.upper() in ("RTP/AVP", "RTP/AVPF")


def _is_telephone_event(rtpmap: RtpMap) -> bool:
    return rtpmap.encoding.lower() == "telephone-event"


def create_answer(offer: SessionDescription, local: LocalMedia) -> SessionDescription:
    """Answer a remote offer (RFC 3264 §6).

    Keeps the m-lines of the offer in order. The first audio stream we can take is accepted
    with the offerer's payload type numbers, our codecs in our preference order, then
    telephone-event (only if offered and a codec matched). Every other stream — video, a second
    audio, SRTP profiles, nothing in common — is answered with port 0. Extmaps we want are
    answered with the offerer's id. Raises :class:`OfferAnswerError` if no stream is accepted.
    """
    answer = _session_shell(local)
    accepted = False
    for offered in offer.media:
        unusable = (
            offered.media != "audio"
            or offered.port == 0
            or not _is_plain_rtp(offered)
            or offer.media_connection(offered) is None  # nowhere to send to (RFC 4566 §5.7)
        )
        if accepted or unusable:
            answer.media.append(_rejected(offered))
            continue
        chosen = _answer_audio(offer, offered, local)
        if chosen is None:
            answer.media.append(_rejected(offered))
            continue
        answer.media.append(chosen)
        accepted = True
    if not accepted:
        raise OfferAnswerError("No acceptable audio stream in the offer")
    return answer


def _answer_audio(
    offer: SessionDescription, offered: MediaDescription, local: LocalMedia
) -> MediaDescription | None:
    offered_maps = [m for m in (offered.rtpmap_for(pt) for pt in offered.payload_types) if m]
    media = MediaDescription(media="audio", port=local.port, proto=offered.proto)
    for codec in local.codecs:
        for rtpmap in offered_maps:
            if codec.matches(rtpmap) and rtpmap.payload_type not in media.rtpmaps:
                pt = rtpmap.payload_type
                media.formats.append(str(pt))
                media.rtpmaps[pt] = rtpmap
                if codec.fmtp:
                    media.fmtps[str(pt)] = codec.fmtp
                break
    if not media.formats:
        return None
    if local.telephone_event:
        # RFC 4733 §7.1.1: events use the clock rate of the audio codec; 8000 as a fallback.
        events = [m for m in offered_maps if _is_telephone_event(m)]
        send_rate = media.rtpmaps[int(media.formats[0])].clock_rate
        events.sort(key=lambda m: (m.clock_rate != send_rate, m.clock_rate != 8000))
        if events:
            rtpmap = events[0]
            pt = rtpmap.payload_type
            media.formats.append(str(pt))
            media.rtpmaps[pt] = rtpmap
            media.fmtps[str(pt)] = offered.fmtps.get(str(pt)) or TELEPHONE_EVENT.fmtp or ""
    media.ptime = local.ptime
    wanted = set(local.extmap_uris)
    for extmap in [*offer.extmaps, *offered.extmaps]:
        if extmap.uri in wanted and all(e.uri != extmap.uri for e in media.extmaps):
            direction = None
            if extmap.direction is not None:
                direction = _direction_attribute(answer_direction(extmap.direction))
            media.extmaps.append(Extmap(extmap.id, extmap.uri, direction))
    media.rtcp_mux = offered.rtcp_mux and local.rtcp_mux
    media.direction = _direction_attribute(
        answer_direction(offer.media_direction(offered), local.direction)
    )
    return media


def negotiate(
    offer: SessionDescription, answer: SessionDescription, *, local_is_offerer: bool
) -> NegotiatedAudio:
    """Combine a completed offer/answer into the parameters of our audio stream.

    The stream is the first audio m-line the answer accepted (port != 0). We send with the first
    format of the answer that is in the offer (RFC 3264 §6.1, §7). Raises
    :class:`OfferAnswerError` if the answer does not match the offer or accepts no audio.
    """
    if len(answer.media) != len(offer.media):
        raise OfferAnswerError("Answer has a different number of m-lines than the offer")
    for index, (o_media, a_media) in enumerate(zip(offer.media, answer.media, strict=True)):
        if o_media.media != a_media.media:
            raise OfferAnswerError(f"m-line {index} changed media type in the answer")
        if o_media.media != "audio" or a_media.port == 0 or o_media.port == 0:
            continue
        offered_pts = set(o_media.payload_types)
        answered = [pt for pt in a_media.payload_types if pt in offered_pts]
        telephone_event = None
        codecs: list[RtpMap] = []
        for pt in answered:
            rtpmap = a_media.rtpmap_for(pt) or o_media.rtpmap_for(pt)
            if rtpmap is None:
                continue
            if _is_telephone_event(rtpmap):
                telephone_event = telephone_event if telephone_event is not None else pt
            elif rtpmap.encoding.lower() not in ("cn", "red", "ulpfec"):
                codecs.append(rtpmap)
        if not codecs:
            raise OfferAnswerError("Answer accepted audio without a common codec")
        remote = answer if local_is_offerer else offer
        local = offer if local_is_offerer else answer
        r_media = a_media if local_is_offerer else o_media
        l_media = o_media if local_is_offerer else a_media
        connection = remote.media_connection(r_media)
        if connection is None:
            raise OfferAnswerError("No connection address for the audio stream")
        extmap_ids = {e.uri: e.id for e in [*answer.extmaps, *a_media.extmaps]}
        direction = local.media_direction(l_media)
        send = codecs[0]
        fmtp = a_media.fmtps.get(str(send.payload_type)) or o_media.fmtps.get(
            str(send.payload_type)
        )
        rtcp_mux = o_media.rtcp_mux and a_media.rtcp_mux
        if rtcp_mux:
            rtcp_port = r_media.port
        elif r_media.rtcp is not None:
            rtcp_port = r_media.rtcp.port
        else:
            rtcp_port = r_media.port + 1  # RFC 3550 §11
        return NegotiatedAudio(
            remote_address=connection.address,
            remote_port=r_media.port,
            remote_rtcp_port=rtcp_port,
            payload_type=send.payload_type,
            codec=send,
            fmtp=fmtp,
            receive_payload_types={m.payload_type: m for m in codecs},
            telephone_event_payload_type=telephone_event,
            extmap_ids=extmap_ids,
            direction=direction,
            remote_ptime=r_media.ptime,
            rtcp_mux=rtcp_mux,
        )
    raise OfferAnswerError("No accepted audio stream")


def with_version(session: SessionDescription, version: int) -> SessionDescription:
    """A copy with a new o= session version (RFC 3264 §8: +1 for every changed offer/answer)."""
    return replace(session, origin=replace(session.origin, session_version=version))
