"""SIP messages: parse and serialise requests and responses (RFC 3261 §7, §20, §25).

Theory of operation
-------------------
This module turns bytes into :class:`Request`/:class:`Response` objects and back. It holds no
state about transactions or dialogs and does no I/O. Two entry points take bytes:

* :func:`parse_message` takes one whole message (a UDP datagram, or one frame cut by the framer).
* :class:`StreamFramer` cuts a TCP/TLS byte stream into messages using Content-Length
  (RFC 3261 §18.3) and reports CRLF keep-alives (RFC 5626 §3.5.1).

Header values are kept as text, exactly as received apart from unfolding and trimming, so a proxy
or B2BUA can copy them untouched. Typed views (:class:`SipUri`, :class:`NameAddr`, :class:`Via`)
are parsed on demand through properties of the message.

Errors: anything wrong with bytes from the network raises :class:`SipParseError`, a *remote* error
carrying the SIP status to answer with (400, 414, 505, 513). Misuse of this API by our own
code (a bug) raises ordinary ``TypeError``/``ValueError`` instead.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "SipParseError",
    "Headers",
    "Request",
    "Response",
    "Message",
    "KeepAlive",
    "StreamFramer",
    "SipUri",
    "NameAddr",
    "Via",
    "parse_message",
    "new_branch",
    "new_tag",
    "new_call_id",
    "make_response",
    "unescape",
    "canonical_header_name",
    "REASON_PHRASES",
    "MAGIC_COOKIE",
]

#: RFC 3261 §8.1.1.7: branch IDs of RFC 3261 transactions start with this cookie.
MAGIC_COOKIE = "z9hG4bK"

# Limits on what we accept from the network. Generous for real traffic, small enough that a
# hostile peer cannot make us buffer or split megabytes.
DEFAULT_MAX_SIZE = 65535
MAX_HEADER_COUNT = 256
MAX_HEADER_LINE = 8192
MAX_REQUEST_URI = 4096


class SipParseError(ValueError):
    """The peer sent something that is not a valid SIP message (a remote error).

    ``status``/``reason`` say how to answer a request that fails this way (RFC 3261 §21.4).
    ``message`` is a best-effort parse of the start line and headers when those were readable,
    so that the caller can still build an error response with :func:`make_response`.
    """

    def __init__(
        self, reason: str, status: int = 400, *, message: Request | Response | None = None
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


# ---------------------------------------------------------------------------------------------
# Lexical helpers (RFC 3261 §25.1)
# ---------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_WS = " \t"


def _is_token(text: str) -> bool:
    return bool(text) and _TOKEN_RE.match(text) is not None


def _quote(text: str) -> str:
    """quoted-string of RFC 3261 §25.1, escaping only what must be escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(text: str) -> str:
    """Inverse of :func:`_quote` for a text that starts and ends with a double quote."""
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _split_outside(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is outside quoted strings and outside <...>."""
    if sep not in text:
        return [text]
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            if depth:
                depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _parse_params(text: str, *, lower_names: bool = True) -> dict[str, str | None]:
    """``name=value;flag`` (the separator before the first one removed) into an ordered dict.

    Names are case-insensitive (RFC 3261 §7.3.1) so they are lowered. Quoted values are unquoted.
    A parameter without ``=`` maps to ``None``.
    """
    params: dict[str, str | None] = {}
    if not text.strip():
        return params
    for raw in _split_outside(text, ";"):
        raw = raw.strip(_WS)
        if not raw:
            if params or text.strip(_WS).startswith(";"):
                # ";;" or a trailing ";" — empty generic-param is not allowed.
                raise SipParseError("Empty parameter")
            continue
        name, eq, value = raw.partition("=")
        name = name.strip(_WS)
        if not _is_token(name):
            raise SipParseError(f"Bad parameter name {name!r}")
        if lower_names:
            name = name.lower()
        if eq:
            value = value.strip(_WS)
            if value.startswith('"'):
                if _closing_quote(value) != len(value) - 1:
                    raise SipParseError(f"Unterminated quoted parameter {name!r}")
                value = _unquote(value)
            elif not value:
                raise SipParseError(f"Empty value for parameter {name!r}")
            params[name] = value
        else:
            params[name] = None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif _is_token(value) or _is_host_like(value):
            out.append(f";{name}={value}")
        else:
            out.append(f";{name}={_quote(value)}")
    return "".join(out)


_HOSTLIKE_RE = re.compile(r"\[?[0-9A-Fa-f:.]+\]?\Z")


def _is_host_like(value: str) -> bool:
    # IPv6 addresses (Via received=, maddr=) are not tokens but must not be quoted.
    return _HOSTLIKE_RE.match(value) is not None


# ---------------------------------------------------------------------------------------------
# Header names (RFC 3261 §7.3.3 compact forms, §20 canonical spellings)
# ---------------------------------------------------------------------------------------------

_COMPACT = {
    "a": "Accept-Contact",  # RFC 3841
    "b": "Referred-By",  # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",  # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",  # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",  # RFC 4474
    "o": "Event",  # RFC 6665
    "r": "Refer-To",  # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",  # RFC 6665
    "v": "Via",
    "x": "Session-Expires",  # RFC 4028
    "y": "Identity",  # RFC 8224
}

_CANONICAL_LIST = [
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
    "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "Identity",
    "Identity-Info", "In-Reply-To", "Info-Package", "Max-Forwards", "Min-Expires", "Min-SE",
    "MIME-Version", "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path",
    "Priority", "Privacy", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck",
    "Reason", "Record-Route", "Recv-Info", "Refer-To", "Referred-By", "Reject-Contact",
    "Replaces", "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
    "Server", "Service-Route", "Session-Expires", "Subject", "Subscription-State", "Supported",
    "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
]  # fmt: skip
_CANONICAL = {name.lower(): name for name in _CANONICAL_LIST}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1): several values may share a
# line. Authorization/WWW-Authenticate are *not* in this set: their commas separate parameters.
_LIST_HEADERS = frozenset(
    name.lower()
    for name in [
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Call-Info", "Contact", "Content-Encoding", "Content-Language",
        "Error-Info", "In-Reply-To", "P-Asserted-Identity", "P-Preferred-Identity", "Path",
        "Proxy-Require", "Reason", "Record-Route", "Recv-Info", "Reject-Contact", "Require",
        "Route", "Service-Route", "Supported", "Unsupported", "Via", "Warning",
    ]
)  # fmt: skip


@functools.lru_cache(maxsize=4096)
def canonical_header_name(name: str) -> str:
    """Expand a compact form and fix the spelling of a known header; unknown names stay as given."""
    lower = name.lower()
    if len(lower) == 1:
        return _COMPACT.get(lower, name)
    return _CANONICAL.get(lower, name)


@functools.lru_cache(maxsize=4096)
def _key(name: str) -> str:
    return canonical_header_name(name).lower()


class Headers:
    """Ordered, case-insensitive multi-map of header fields (RFC 3261 §7.3).

    Each entry is one header line as it appeared (name canonicalised, value trimmed). For list
    headers (Via, Contact, Route, ...) :meth:`get_all` splits comma-joined values, respecting
    quoted strings and ``<...>``.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] | None = None) -> None:
        # (lookup key, name as written, value)
        self._items: list[tuple[str, str, str]] = []
        if items is not None:
            for name, value in items:
                self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((_key(name), canonical_header_name(name), str(value)))

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by ``value``, at the position of the first one."""
        key = _key(name)
        new: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    new.append((key, item[1], str(value)))  # keep the spelling already there
                    placed = True
            else:
                new.append(item)
        if not placed:
            new.append((key, canonical_header_name(name), str(value)))
        self._items = new

    def remove(self, name: str) -> None:
        key = _key(name)
        self._items = [item for item in self._items if item[0] != key]

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _key(name)
        for item_key, _, value in self._items:
            if item_key == key:
                if key in _LIST_HEADERS:
                    values = self.get_all(name)
                    return values[0] if values else default
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        key = _key(name)
        values = [value for item_key, _, value in self._items if item_key == key]
        if key in _LIST_HEADERS:
            split: list[str] = []
            for value in values:
                if "," not in value:
                    if value:
                        split.append(value)
                    continue
                split.extend(part.strip() for part in _split_outside(value, ",") if part.strip())
            return split
        return values

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for _, name, value in self._items]

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        return new

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(item[0] == key for item in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


# ---------------------------------------------------------------------------------------------
# URIs and addresses (RFC 3261 §19.1, §20.10, §25.1)
# ---------------------------------------------------------------------------------------------

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_HOSTNAME_RE = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9\-_]*[A-Za-z0-9_])?(\.[A-Za-z0-9]([A-Za-z0-9\-_]*[A-Za-z0-9_])?)*\.?\Z"
)
_IPV4_RE = re.compile(r"\d{1,3}(\.\d{1,3}){3}\Z")
_IPV6_RE = re.compile(r"[0-9A-Fa-f:.]+\Z")
_URI_BAD_RE = re.compile(r'[ \t\r\n<>"]')


def _parse_hostport(text: str, what: str) -> tuple[str, int | None]:
    """host [":" port] where host is a hostname, IPv4 address or bracketed IPv6 reference.

    The returned host has no brackets; :func:`_format_host` puts them back.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"Unterminated IPv6 reference in {what}")
        host = text[1:end]
        if not host or ":" not in host or not _IPV6_RE.match(host):
            raise SipParseError(f"Bad IPv6 reference in {what}")
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"Junk after host in {what}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        if not host or not _HOSTNAME_RE.match(host):
            raise SipParseError(f"Bad host {host!r} in {what}")
        if _IPV4_RE.match(host) and any(int(octet) > 255 for octet in host.split(".")):
            raise SipParseError(f"Bad IPv4 address {host!r} in {what}")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5:
            raise SipParseError(f"Bad port in {what}")
        port = int(port_text)
        if port > 65535:
            raise SipParseError(f"Port out of range in {what}")
    return host, port


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class SipUri:
    """A SIP or SIPS URI (RFC 3261 §19.1). Other schemes keep their text in ``opaque``.

    ``user`` and ``password`` are kept escaped, as on the wire (RFC 3261 §19.1.2). ``host`` has no
    IPv6 brackets. Parameter names are lowered; a flag parameter (``;lr``) maps to ``None``.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    opaque: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        if len(text) > _CACHEABLE:
            return cls._parse(text)
        return _clone_uri(_cached_uri(text))

    @classmethod
    def _parse(cls, text: str) -> SipUri:
        text = text.strip(_WS)
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.match(scheme):
            raise SipParseError(f"Bad URI {text[:80]!r}")
        if not rest or _URI_BAD_RE.search(rest):
            raise SipParseError(f"Bad URI {text[:80]!r}")
        scheme_l = scheme.lower()
        if scheme_l not in ("sip", "sips"):
            # absoluteURI (RFC 3261 §25.1): we only need to carry it, not to understand it.
            return cls(scheme=scheme_l, opaque=rest)
        user = password = None
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, pcolon, pw = userinfo.partition(":")
            if pcolon:
                password = pw
            if not user:
                raise SipParseError("Empty user part in URI")
            _check_escapes(userinfo)
        rest, qmark, headers_text = rest.partition("?")
        hostport, _, params_text = rest.partition(";")
        host, port = _parse_hostport(hostport, "URI")
        params = _parse_params(params_text) if params_text else {}
        if params_text and not params:
            raise SipParseError("Empty URI parameter")
        headers: dict[str, str] = {}
        if qmark:
            for pair in headers_text.split("&"):
                name, eq, value = pair.partition("=")
                if not name or not eq:
                    raise SipParseError("Bad URI header")
                headers[name] = value
        return cls(
            scheme=scheme_l,
            user=user,
            password=password,
            host=host,
            port=port,
            params=params,
            headers=headers,
        )

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(_format_host(self.host))
        if self.port is not None:
            out.append(f":{self.port}")
        # uri-parameter values are never quoted-strings (RFC 3261 §25.1): written as held.
        for name, value in self.params.items():
            out.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(out)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    def equivalent(self, other: SipUri) -> bool:
        """URI comparison of RFC 3261 §19.1.4 (not textual equality).

        User and password compare case-sensitively after unescaping, the host
        case-insensitively; a missing port differs from an explicit 5060; the user, ttl, method,
        maddr and transport parameters must match when either URI has them, other parameters
        only when both have them; URI headers must match as a set.
        """
        if self.opaque is not None or other.opaque is not None:
            return self.scheme == other.scheme and self.opaque == other.opaque
        if self.scheme != other.scheme or self.port != other.port:
            return False
        if self.host.lower() != other.host.lower():
            return False
        if _opt_unescape(self.user) != _opt_unescape(other.user):
            return False
        if _opt_unescape(self.password) != _opt_unescape(other.password):
            return False
        mine, theirs = _comparable_params(self.params), _comparable_params(other.params)
        for name in mine.keys() | theirs.keys():
            compared = name in _URI_PARAMS_MUST_MATCH or (name in mine and name in theirs)
            if compared and mine.get(name, _ABSENT) != theirs.get(name, _ABSENT):
                return False
        return _comparable_params(self.headers) == _comparable_params(other.headers)


_ABSENT = object()
_URI_PARAMS_MUST_MATCH = frozenset({"user", "ttl", "method", "maddr", "transport"})
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 §19.1.2); the octets are read as UTF-8."""
    if "%" not in text:
        return text
    out = bytearray()
    pos = 0
    for match in _ESCAPE_RE.finditer(text):
        out += text[pos : match.start()].encode("utf-8", "surrogateescape")
        out.append(int(match.group(1), 16))
        pos = match.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "surrogateescape")


def _opt_unescape(text: str | None) -> str | None:
    return None if text is None else unescape(text)


def _comparable_params(params: dict) -> dict[str, str | None]:
    return {
        unescape(name).lower(): None if value is None else unescape(value).lower()
        for name, value in params.items()
    }


def _check_escapes(text: str) -> None:
    i = text.find("%")
    while i >= 0:
        pair = text[i + 1 : i + 3]
        if len(pair) != 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
            raise SipParseError("Bad escape in URI")
        i = text.find("%", i + 3)


def _find_unquoted(text: str, char: str) -> int:
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == char:
            return i
        i += 1
    return -1


@dataclass
class NameAddr:
    """From/To/Contact/Route value: optional display name, URI, header parameters (§20.10).

    ``display_name`` is unquoted and unescaped. In the addr-spec form (no ``<>``), parameters
    after the URI belong to the header, not the URI (RFC 3261 §20.10).
    """

    uri: SipUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        if len(text) > _CACHEABLE:
            return cls._parse(text)
        proto = _cached_name_addr(text)
        return NameAddr(_clone_uri(proto.uri), proto.display_name, dict(proto.params))

    @classmethod
    def _parse(cls, text: str) -> NameAddr:
        text = text.strip(_WS)
        if not text:
            raise SipParseError("Empty address")
        lt = _find_unquoted(text, "<")
        if text.startswith('"') and _closing_quote(text) < 0:
            raise SipParseError("Unterminated quoted display name")  # RFC 4475 §3.1.2.6
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError("Unterminated <> in address")
            display = text[:lt].strip(_WS)
            inner = text[lt + 1 : gt]
            if inner != inner.strip(_WS):
                raise SipParseError("Whitespace inside <>")  # RFC 4475 §3.1.2.14
            uri = SipUri.parse(inner)
            rest = text[gt + 1 :].strip(_WS)
            if display.startswith('"'):
                if _closing_quote(display) != len(display) - 1:
                    raise SipParseError("Junk after quoted display name")
                display_name: str | None = _unquote(display)
            elif display:
                # *(token LWS): a display name without quotes is a sequence of tokens.
                if not all(_is_token(word) for word in display.split()):
                    raise SipParseError("Bad display name")
                display_name = " ".join(display.split())
            else:
                display_name = None
        else:
            # addr-spec: the URI may not contain ',', '?' or ';' unescaped (§20.10).
            uri_text, _, rest = text.partition(";")
            rest = ";" + rest if rest else ""
            if " " in uri_text.strip(_WS) or "?" in uri_text:
                raise SipParseError("Bad addr-spec")
            uri = SipUri.parse(uri_text)
            display_name = None
        if rest and not rest.startswith(";"):
            raise SipParseError("Junk after address")
        params = _parse_params(rest[1:]) if rest else {}
        return cls(uri=uri, display_name=display_name, params=params)

    def __str__(self) -> str:
        if self.display_name is not None:
            if self.display_name and all(_is_token(w) for w in self.display_name.split(" ")):
                head = self.display_name + " "
            else:
                head = _quote(self.display_name) + " "
        else:
            head = ""
        return f"{head}<{self.uri}>{_format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


def _closing_quote(text: str) -> int:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return -1


_COLON_LWS_RE = re.compile(r"[ \t]*:[ \t]*")
_VIA_PROTO_RE = re.compile(
    r"([^/\s]+)[ \t]*/[ \t]*([^/\s]+)[ \t]*/[ \t]*([^/\s]+)[ \t]+(.*)\Z", re.S
)


@dataclass
class Via:
    """One Via value (RFC 3261 §20.42): ``SIP/2.0/<transport> host[:port];params``.

    ``params['rport']`` is ``None`` when the flag was sent without a value (RFC 3581).
    """

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        if len(text) > _CACHEABLE:
            return cls._parse(text)
        proto = _cached_via(text)
        return Via(proto.transport, proto.host, proto.port, dict(proto.params))

    @classmethod
    def _parse(cls, text: str) -> Via:
        match = _VIA_PROTO_RE.match(text.strip(_WS))
        if not match:
            raise SipParseError("Bad Via")
        name, version, transport, rest = match.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise SipParseError("Bad Via protocol")
        if not _is_token(transport):
            raise SipParseError("Bad Via transport")
        sentby, semicolon, params_text = rest.partition(";")
        sentby = _COLON_LWS_RE.sub(":", sentby.strip(_WS))
        host, port = _parse_hostport(sentby, "Via")
        if semicolon and not params_text.strip(_WS):
            raise SipParseError("Empty Via parameter")
        params = _parse_params(params_text) if semicolon else {}
        if "branch" in params and not params["branch"]:
            raise SipParseError("Empty Via branch")
        return cls(transport=transport.upper(), host=host, port=port, params=params)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return (
            f"SIP/2.0/{self.transport} {_format_host(self.host)}{port}{_format_params(self.params)}"
        )

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


# The same header values are parsed again and again (validation, then each property access, and
# retransmissions). Parse results are cached by text and handed out as copies, since the
# dataclasses are mutable. Errors are not cached, and long values are not cached at all.
_CACHEABLE = 512


def _clone_uri(uri: SipUri) -> SipUri:
    return SipUri(
        uri.scheme, uri.user, uri.password, uri.host, uri.port, dict(uri.params),
        dict(uri.headers), uri.opaque,
    )  # fmt: skip


@functools.lru_cache(maxsize=2048)
def _cached_uri(text: str) -> SipUri:
    return SipUri._parse(text)


@functools.lru_cache(maxsize=2048)
def _cached_name_addr(text: str) -> NameAddr:
    return NameAddr._parse(text)


@functools.lru_cache(maxsize=2048)
def _cached_via(text: str) -> Via:
    return Via._parse(text)


# ---------------------------------------------------------------------------------------------
# Messages (RFC 3261 §7)
# ---------------------------------------------------------------------------------------------


class _MessageViews:
    """Typed views on the headers every message carries (RFC 3261 §8.1.1)."""

    headers: Headers

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"Missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        return _parse_cseq(self._required("CSeq"))

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def from_addr(self) -> NameAddr:
        return NameAddr.parse(self._required("From"))

    @property
    def to_addr(self) -> NameAddr:
        return NameAddr.parse(self._required("To"))

    @property
    def contacts(self) -> list[NameAddr]:
        values = self.headers.get_all("Contact")
        if values == ["*"]:
            return []
        return [NameAddr.parse(v) for v in values]


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not parts[0].isascii():
        raise SipParseError("Bad CSeq")
    number = int(parts[0])
    if number >= 2**31:  # RFC 3261 §8.1.1.5: less than 2**31
        raise SipParseError("CSeq number out of range")
    if not _is_token(parts[1]):
        raise SipParseError("Bad CSeq method")
    return number, parts[1]


def _serialise(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    length_written = False
    for key, name, value in headers._items:
        if key == "content-length":
            if length_written:
                continue
            value = str(len(body))
            length_written = True
        lines.append(f"{name}: {value}")
    if not length_written:
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8", "surrogateescape") + body


@dataclass(eq=True)
class Request(_MessageViews):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def to_bytes(self) -> bytes:
        """Serialise; Content-Length always reflects ``body`` (RFC 3261 §20.14)."""
        return _serialise(f"{self.method} {self.uri} SIP/2.0", self.headers, self.body)


@dataclass(eq=True)
class Response(_MessageViews):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def to_bytes(self) -> bytes:
        return _serialise(f"SIP/2.0 {self.status} {self.reason}", self.headers, self.body)


Message = Request | Response


_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_LINE_RE = re.compile(r"\r?\n")
_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)\Z", re.I)
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}:\d{2} GMT\Z"
)
_REQUIRED_REQUEST = ("To", "From", "CSeq", "Call-ID", "Via")
_REQUIRED_RESPONSE = ("To", "From", "CSeq", "Call-ID", "Via")
# Headers holding a single value: a message with two of them is malformed (RFC 3261 §7.3.1).
_SINGLETON = ("to", "from", "call-id", "cseq", "max-forwards", "content-length", "content-type")


def _split_head(data: bytes) -> tuple[bytes, bytes, bool]:
    """Return (head, body, had_blank_line)."""
    idx = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if idx >= 0 and (lf < 0 or lf > idx):
        return data[:idx], data[idx + 4 :], True
    if lf >= 0:
        # Bare-LF line ends: not RFC 3261, but tolerated (be liberal in what we accept).
        return data[:lf], data[lf + 2 :], True
    return data, b"", False


def _check_version(version: str, message: Message | None) -> None:
    match = _VERSION_RE.match(version)
    if not match:
        raise SipParseError(f"Bad SIP version {version[:20]!r}", message=message)
    if (int(match.group(1)), int(match.group(2))) != (2, 0):
        # RFC 3261 §21.5.15
        raise SipParseError("Version Not Supported", 505, message=message)


def _parse_head(head: str) -> tuple[str, Headers]:
    """Unfold (RFC 3261 §7.3.1) and split the header section into a start line and Headers."""
    head = _FOLD_RE.sub(" ", head)
    lines = _LINE_RE.split(head)
    start_line = lines[0]
    if len(lines) - 1 > MAX_HEADER_COUNT:
        raise SipParseError("Too many header fields")
    headers = Headers()
    items = headers._items
    for line in lines[1:]:
        if len(line) > MAX_HEADER_LINE:
            raise SipParseError("Header field too long")
        name, colon, value = line.partition(":")
        entry = _header_entry(name) if colon else None
        if entry is None:
            raise SipParseError(f"Malformed header line {line[:40]!r}")
        items.append((entry[0], entry[1], value.strip(" \t\r")))
    return start_line, headers


@functools.lru_cache(maxsize=1024)
def _header_entry(raw_name: str) -> tuple[str, str] | None:
    """(lookup key, canonical name) for a header name as received, or None if not a token."""
    name = raw_name.rstrip(_WS)
    if not _is_token(name):
        return None
    return _key(name), canonical_header_name(name)


def parse_message(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Request | Response:
    """Parse one complete SIP message (a datagram or a framed stream message).

    Raises :class:`SipParseError` for anything malformed; never another exception for bad input.
    """
    if len(data) > max_size:
        raise SipParseError("Message Too Large", 513)  # RFC 3261 §21.5.11
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("Empty message")
    head_bytes, body, had_blank = _split_head(data)
    # surrogateescape keeps non-UTF-8 octets so that re-serialising gives the same bytes.
    head = head_bytes.decode("utf-8", "surrogateescape")
    start_line, headers = _parse_head(head)
    if start_line.startswith(("SIP/", "sip/")) or start_line[:4].upper() == "SIP/":
        message = _parse_status_line(start_line, headers)
    else:
        message = _parse_request_line(start_line, headers)
    if not had_blank:
        raise SipParseError("No blank line after headers", message=message)
    _validate(message, body)
    return message


def _parse_status_line(line: str, headers: Headers) -> Response:
    parts = line.split(" ", 2)
    if len(parts) < 2:
        raise SipParseError("Bad status line")
    version, code = parts[0], parts[1]
    reason = parts[2] if len(parts) == 3 else ""
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not "1" <= code[0] <= "6":
        raise SipParseError("Bad status code")
    message = Response(int(code), reason, headers)
    _check_version(version, message)
    return message


def _parse_request_line(line: str, headers: Headers) -> Request:
    # RFC 3261 §7.1: Method SP Request-URI SP SIP-Version, single spaces, no LWS in the URI.
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Malformed Request-Line")
    method, uri, version = parts
    if not _is_token(method):
        raise SipParseError("Bad method")
    if len(uri) > MAX_REQUEST_URI:
        raise SipParseError("Request-URI Too Long", 414)  # RFC 3261 §21.4.12
    message = Request(method, uri, headers)
    _check_version(version, message)
    scheme, colon, rest = uri.partition(":")
    if not colon or not _SCHEME_RE.match(scheme) or not rest or _URI_BAD_RE.search(rest):
        raise SipParseError("Bad Request-URI", message=message)
    if scheme.lower() in ("sip", "sips"):
        try:
            parsed = SipUri.parse(uri)
        except SipParseError as exc:
            raise SipParseError(exc.reason, message=message) from None
        if parsed.headers:
            # RFC 3261 §19.1.1 table 1: headers are not allowed in a Request-URI.
            raise SipParseError("Headers in Request-URI", message=message)
    return message


def _validate(message: Message, body: bytes) -> None:
    """Checks every element must make before acting on a message (RFC 3261 §8.2, §16.3)."""
    headers = message.headers
    counts: dict[str, int] = {}
    for key, _, _ in headers._items:
        counts[key] = counts.get(key, 0) + 1
    try:
        for name in _REQUIRED_REQUEST if isinstance(message, Request) else _REQUIRED_RESPONSE:
            if name.lower() not in counts:
                raise SipParseError(f"Missing {name} header")
        for key, count in counts.items():
            if count > 1 and key in _SINGLETON and key != "content-length":
                raise SipParseError(f"Duplicate {canonical_header_name(key)} header")
        number, method = message.cseq
        if isinstance(message, Request):
            if method != message.method:
                raise SipParseError("CSeq method does not match Request-Line")
            max_forwards = headers.get("Max-Forwards")
            if max_forwards is not None and (
                not max_forwards.isdigit() or not max_forwards.isascii() or int(max_forwards) > 255
            ):
                raise SipParseError("Bad Max-Forwards")
        # Parse the typed views once so a malformed value is a 400 now, not a crash later.
        _ = (message.from_addr, message.to_addr)
        vias = message.vias
        if not vias:
            raise SipParseError("Empty Via")
        if headers.get_all("Contact") != ["*"]:
            _ = message.contacts
        date = headers.get("Date")
        if date is not None and not _DATE_RE.match(date):
            # RFC 3261 §20.17: rfc1123-date, and the only zone allowed is "GMT".
            raise SipParseError("Bad Date")
        expires = headers.get("Expires")
        if expires is not None and (not expires.isdigit() or not expires.isascii()):
            raise SipParseError("Bad Expires")
        message.body = _frame_body(headers, body)
    except SipParseError as exc:
        if exc.message is None:
            exc.message = message
        raise


def _frame_body(headers: Headers, body: bytes) -> bytes:
    lengths = headers.get_all("Content-Length")
    if not lengths:
        return body  # datagram without Content-Length: the body is the rest (RFC 3261 §18.3)
    values = set()
    for text in lengths:
        if not text.isdigit() or not text.isascii() or len(text) > 9:
            raise SipParseError("Bad Content-Length")
        values.add(int(text))
    if len(values) != 1:
        raise SipParseError("Conflicting Content-Length headers")
    length = values.pop()
    if length > len(body):
        raise SipParseError("Content-Length larger than body")
    # RFC 3261 §18.3: bytes past Content-Length in a datagram are discarded.
    return body[:length]


# ---------------------------------------------------------------------------------------------
# Stream framing (RFC 3261 §18.3, RFC 5626 §3.5.1)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepAlive:
    """A CRLF keep-alive on a stream (RFC 5626 §3.5.1).

    ``ping`` is True for a double CRLF, which the receiver must answer with a single CRLF (pong).
    """

    ping: bool


_CL_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)


class StreamFramer:
    """Cut a TCP/TLS byte stream into SIP messages using Content-Length (RFC 3261 §18.3).

    ``feed`` returns what became complete: messages, keep-alives, and :class:`SipParseError`
    for messages that were framed correctly but are malformed (the stream stays usable). A
    framing error (no usable Content-Length, oversize header section) is returned as a
    :class:`SipParseError` with ``fatal`` set to True in :attr:`broken`; the connection must then
    be closed, and further input is ignored.
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._buffer = bytearray()
        self.max_size = max_size
        self.broken = False

    def feed(self, data: bytes) -> list[Request | Response | SipParseError | KeepAlive]:
        if self.broken:
            return []
        self._buffer += data
        out: list[Request | Response | SipParseError | KeepAlive] = []
        buf = self._buffer
        while buf:
            if buf[:1] == b"\r" or buf[:1] == b"\n":
                if buf[:4] == b"\r\n\r\n":
                    del buf[:4]
                    out.append(KeepAlive(ping=True))
                    continue
                if buf[:2] == b"\r\n":
                    if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                        if len(buf) == 2:
                            # A lone CRLF: a pong, or half a ping. Pings are written in one
                            # piece, so call it a pong now rather than stall.
                            del buf[:2]
                            out.append(KeepAlive(ping=False))
                            continue
                        break  # "\r\n\r": wait for the rest
                    del buf[:2]
                    out.append(KeepAlive(ping=False))
                    continue
                if buf[:1] == b"\n":
                    del buf[:1]  # stray LF: ignore (RFC 3261 §7.5)
                    continue
                if len(buf) < 2:
                    break
                del buf[:1]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_size:
                    self._break(out, "Header section too large", 513)
                break
            head = bytes(buf[:end])
            lengths = _CL_RE.findall(head)
            if not lengths:
                self._break(out, "Missing Content-Length on stream")
                break
            values = {v.strip() for v in lengths}
            if len(values) != 1:
                self._break(out, "Conflicting Content-Length")
                break
            text = values.pop()
            if not text.isdigit() or len(text) > 9:
                self._break(out, "Bad Content-Length")
                break
            total = end + 4 + int(text)
            if total > self.max_size:
                self._break(out, "Message Too Large", 513)
                break
            if len(buf) < total:
                break
            frame = bytes(buf[:total])
            del buf[:total]
            try:
                out.append(parse_message(frame, max_size=self.max_size))
            except SipParseError as exc:
                out.append(exc)
        return out

    def _break(self, out: list, reason: str, status: int = 400) -> None:
        self.broken = True
        self._buffer.clear()
        out.append(SipParseError(reason, status))


# ---------------------------------------------------------------------------------------------
# Identifiers (RFC 3261 §8.1.1.4, §8.1.1.7, §19.3) — from a CSPRNG so they cannot be guessed.
# ---------------------------------------------------------------------------------------------


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(10)


def new_tag() -> str:
    return secrets.token_hex(8)


def new_call_id() -> str:
    return secrets.token_hex(16)


# ---------------------------------------------------------------------------------------------
# Responses (RFC 3261 §8.2.6, §21)
# ---------------------------------------------------------------------------------------------

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief", 428: "Use Identity Header",
    429: "Provide Referrer Identity", 433: "Anonymity Disallowed", 436: "Bad Identity-Info",
    437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 469: "Bad Info Package",
    470: "Consent Needed", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted",
}  # fmt: skip


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] | Headers | None = None,
    body: bytes = b"",
) -> Response:
    """Build a response to ``request`` as RFC 3261 §8.2.6.2 says.

    Via (all values, in order), From, To, Call-ID and CSeq are copied; ``to_tag`` is added to To
    unless it already carries a tag. A 100 Trying copies Timestamp (§8.2.6.1). ``headers`` are
    appended after those.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} out of range")
    if reason is None:
        reason = REASON_PHRASES.get(status, "Unknown")
    out = Headers()
    for item in request.headers._items:
        if item[0] == "via":
            out._items.append(item)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is None:
            continue
        if name == "To" and to_tag is not None:
            try:
                has_tag = NameAddr.parse(value).tag is not None
            except SipParseError:
                has_tag = True
            if not has_tag:
                value = f"{value};tag={to_tag}"
        out.add(name, value)
    if status == 100 and "Timestamp" in request.headers:
        out.add("Timestamp", request.headers.get("Timestamp") or "")
    if headers is not None:
        for name, value in headers.items() if isinstance(headers, Headers) else headers:
            out.add(name, value)
    return Response(status, reason, out, body)
