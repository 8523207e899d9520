"""Digest access authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO.

Theory of operation
-------------------
Server side, :class:`DigestChallenger` builds challenges (``WWW-Authenticate`` for a registrar or
UAS, ``Proxy-Authenticate`` for a proxy) and verifies ``Authorization`` values against a
credential lookup. Nonces carry their own issue time and an HMAC over it, so checking that a nonce
is ours and how old it is needs no storage. The only state is, per nonce still in use, the highest
nonce-count seen (RFC 7616 §3.4: replay protection); it is bounded and expires with the nonce.

Client side, :class:`DigestClient` answers a 401/407 with an ``Authorization`` or
``Proxy-Authorization`` value, counting ``nc`` per nonce so that it can reuse a nonce for later
requests.

Time is passed in (``now``, seconds); nothing here sleeps, reads a clock, or does I/O.
Malformed header values from the peer raise :class:`AuthParseError` (a remote error, answer 400);
:meth:`DigestChallenger.verify` turns them into :attr:`Verdict.MALFORMED` instead.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AuthParseError",
    "Challenge",
    "Credentials",
    "HA1",
    "Verdict",
    "Verification",
    "DigestChallenger",
    "DigestClient",
    "digest_response",
    "parse_challenge",
    "parse_credentials",
    "ALGORITHMS",
]


class AuthParseError(ValueError):
    """A Digest challenge or credentials value from the peer is malformed."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# RFC 7616 §3.3 / RFC 8760 §2.2: algorithm token -> hash function. "-sess" variants hash A1 with
# the nonce and cnonce (RFC 7616 §3.4.2).
_HASHES: dict[str, Callable[[bytes], Any]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-512-256": lambda data: hashlib.new("sha512_256", data),
}
ALGORITHMS = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess")
# Client preference when a server offers several challenges of which we must pick one.
_STRENGTH = {"SHA-512-256": 3, "SHA-256": 2, "MD5": 1}


def _base_algorithm(algorithm: str) -> str:
    base = algorithm[:-5] if algorithm.upper().endswith("-SESS") else algorithm
    for name in _HASHES:
        if name.upper() == base.upper():
            return name
    raise AuthParseError(f"Unsupported algorithm {algorithm!r}")


def _canonical_algorithm(algorithm: str) -> str:
    base = _base_algorithm(algorithm)
    return base + "-sess" if algorithm.upper().endswith("-SESS") else base


def _h(algorithm: str, text: str) -> str:
    return _HASHES[_base_algorithm(algorithm)](text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# Header values (RFC 7616 §3.3, §3.4; RFC 3261 §25.1 challenge / credentials)
# ---------------------------------------------------------------------------------------------

_PARAM_RE = re.compile(
    r'\s*([A-Za-z0-9!#$%&\'*+\-.^_`|~]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)\s*(?:,|\Z)', re.S
)


def _parse_params(value: str, what: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise AuthParseError(f"{what} scheme {scheme[:20]!r} is not Digest")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM_RE.match(rest, pos)
        if not match or match.end() == pos:
            raise AuthParseError(f"Malformed {what} near {rest[pos : pos + 20]!r}")
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if name in params:
            raise AuthParseError(f"Repeated {name!r} in {what}")
        params[name] = raw
        pos = match.end()
    return scheme, params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Challenge:
    """One Digest challenge (a WWW-Authenticate / Proxy-Authenticate value)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None

    def __str__(self) -> str:
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=TRUE")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)


def parse_challenge(value: str) -> Challenge:
    _, params = _parse_params(value, "challenge")
    if "realm" not in params or "nonce" not in params:
        raise AuthParseError("Challenge without realm or nonce")
    qop = tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        domain=params.get("domain"),
    )


@dataclass(frozen=True)
class Credentials:
    """One Digest credentials value (an Authorization / Proxy-Authorization value)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None

    @property
    def nonce_count(self) -> int | None:
        return int(self.nc, 16) if self.nc is not None else None

    def __str__(self) -> str:
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        return "Digest " + ", ".join(parts)


_NC_RE = re.compile(r"[0-9a-fA-F]{8}\Z")


def parse_credentials(value: str) -> Credentials:
    _, params = _parse_params(value, "credentials")
    for name in ("username", "realm", "nonce", "uri", "response"):
        if name not in params:
            raise AuthParseError(f"Credentials without {name}")
    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None and (nc is None or cnonce is None):
        raise AuthParseError("qop without nc/cnonce")  # RFC 7616 §3.4
    if nc is not None and not _NC_RE.match(nc):
        raise AuthParseError("Bad nc")
    return Credentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm=params.get("algorithm", "MD5"),
        cnonce=cnonce,
        opaque=params.get("opaque"),
        qop=qop,
        nc=nc,
    )


# ---------------------------------------------------------------------------------------------
# The digest computation (RFC 7616 §3.4.1-§3.4.3)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HA1:
    """Stored H(username:realm:password) per hash, so a server need not keep passwords."""

    md5: str | None = None
    sha256: str | None = None
    sha512_256: str | None = None

    @classmethod
    def from_password(cls, username: str, realm: str, password: str) -> HA1:
        a1 = f"{username}:{realm}:{password}"
        return cls(md5=_h("MD5", a1), sha256=_h("SHA-256", a1), sha512_256=_h("SHA-512-256", a1))

    def for_algorithm(self, algorithm: str) -> str | None:
        base = _base_algorithm(algorithm)
        return {"MD5": self.md5, "SHA-256": self.sha256, "SHA-512-256": self.sha512_256}[base]


def digest_response(
    *,
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value; ``ha1`` is H(username:realm:password) for ``algorithm``."""
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{nonce}:{cnonce}")  # RFC 7616 §3.4.2
    if qop == "auth-int":
        body_hash = _HASHES[_base_algorithm(algorithm)](body).hexdigest()
        ha2 = _h(algorithm, f"{method}:{uri}:{body_hash}")
    else:
        ha2 = _h(algorithm, f"{method}:{uri}")  # RFC 7616 §3.4.3
    if qop is None:
        return _h(algorithm, f"{ha1}:{nonce}:{ha2}")  # RFC 2069 compatibility
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# ---------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------


class Verdict(enum.Enum):
    """Outcome of checking an Authorization value. Only OK lets the request through."""

    OK = "ok"
    MALFORMED = "malformed"  # answer 400
    WRONG_REALM = "wrong-realm"  # challenge again
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"  # challenge again
    INVALID_NONCE = "invalid-nonce"  # not ours or tampered: challenge again
    UNKNOWN_USER = "unknown-user"  # challenge again (or 403)
    WRONG_PASSWORD = "wrong-password"  # challenge again (or 403)
    STALE_NONCE = "stale-nonce"  # right password, old nonce: challenge with stale=TRUE
    REPLAY = "replay"  # nonce-count not increasing: challenge again
    URI_MISMATCH = "uri-mismatch"  # digest-uri is not the Request-URI: answer 400

    @property
    def wants_stale(self) -> bool:
        return self is Verdict.STALE_NONCE


@dataclass(frozen=True)
class Verification:
    verdict: Verdict
    username: str | None = None
    credentials: Credentials | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


# A credential lookup answers (username, realm) with the plain password, an HA1, or None.
CredentialLookup = Callable[[str, str], "str | HA1 | None"]

_NONCE_TS = struct.Struct(">Q")
_NONCE_MAC_LEN = 16


class DigestChallenger:
    """Issue Digest challenges and verify the answers (server side of RFC 7616 / RFC 8760).

    ``algorithms`` are offered in order, one challenge each (RFC 8760 §2.4 — the client takes the
    topmost it supports, so put the strongest first). ``nonce_lifetime`` bounds how long a nonce
    is accepted; past it a correct answer gets :attr:`Verdict.STALE_NONCE`.
    """

    def __init__(
        self,
        realm: str,
        *,
        secret: bytes | None = None,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        nonce_lifetime: float = 300.0,
        proxy: bool = False,
        max_tracked_nonces: int = 10_000,
        require_qop: bool = False,
    ) -> None:
        for algorithm in algorithms:
            _base_algorithm(algorithm)
        self.realm = realm
        self.algorithms = tuple(_canonical_algorithm(a) for a in algorithms)
        self.nonce_lifetime = nonce_lifetime
        self.proxy = proxy
        self.require_qop = require_qop
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._opaque = secrets.token_hex(8)
        self._max_tracked = max_tracked_nonces
        # nonce -> highest nc seen (0 for a nonce used without qop). Oldest first.
        self._seen: OrderedDict[str, int] = OrderedDict()
        # Nonces issued at or before this time may have been forgotten: treat them as stale.
        self._forgotten_before = -1

    @property
    def challenge_header(self) -> str:
        return "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"

    @property
    def credentials_header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"

    @property
    def status(self) -> int:
        return 407 if self.proxy else 401

    def new_nonce(self, now: float) -> str:
        """Issue time in ms, 8 random octets, and an HMAC over both and the realm."""
        stamp = _NONCE_TS.pack(int(now * 1000)) + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(stamp + self._mac(stamp)).decode("ascii")

    def _mac(self, stamp: bytes) -> bytes:
        message = stamp + self.realm.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_NONCE_MAC_LEN]

    def _nonce_time(self, nonce: str) -> float | None:
        """Issue time of a nonce we made, or None if it is not ours (or was tampered with)."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        if len(raw) != 16 + _NONCE_MAC_LEN:
            return None
        stamp, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(stamp)):
            return None
        return _NONCE_TS.unpack(stamp[:8])[0] / 1000

    def challenges(self, now: float, *, stale: bool = False) -> list[str]:
        """Header values for a 401/407: one challenge per algorithm, all with one new nonce."""
        nonce = self.new_nonce(now)
        return [
            str(
                Challenge(
                    realm=self.realm,
                    nonce=nonce,
                    algorithm=algorithm,
                    qop=("auth",),
                    opaque=self._opaque,
                    stale=stale,
                )
            )
            for algorithm in self.algorithms
        ]

    def verify(
        self,
        authorization: str,
        *,
        method: str,
        now: float,
        lookup: CredentialLookup,
        request_uri: str | None = None,
        body: bytes = b"",
    ) -> Verification:
        """Check one Authorization/Proxy-Authorization value for a request of ``method``."""
        try:
            creds = parse_credentials(authorization)
        except AuthParseError:
            return Verification(Verdict.MALFORMED)
        if creds.realm != self.realm:
            return Verification(Verdict.WRONG_REALM, creds.username, creds)
        try:
            algorithm = _canonical_algorithm(creds.algorithm)
        except AuthParseError:
            return Verification(Verdict.UNSUPPORTED_ALGORITHM, creds.username, creds)
        if algorithm not in self.algorithms:
            return Verification(Verdict.UNSUPPORTED_ALGORITHM, creds.username, creds)
        if creds.qop not in (None, "auth", "auth-int") or (creds.qop is None and self.require_qop):
            return Verification(Verdict.MALFORMED, creds.username, creds)
        if request_uri is not None and creds.uri != request_uri:
            return Verification(Verdict.URI_MISMATCH, creds.username, creds)
        issued = self._nonce_time(creds.nonce)
        if issued is None or issued > now + 5:
            return Verification(Verdict.INVALID_NONCE, creds.username, creds)
        secret = lookup(creds.username, self.realm)
        if secret is None:
            return Verification(Verdict.UNKNOWN_USER, creds.username, creds)
        ha1 = (
            _h(algorithm, f"{creds.username}:{self.realm}:{secret}")
            if isinstance(secret, str)
            else secret.for_algorithm(algorithm)
        )
        if ha1 is None:
            return Verification(Verdict.UNSUPPORTED_ALGORITHM, creds.username, creds)
        expected = digest_response(
            algorithm=algorithm,
            ha1=ha1,
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
            body=body,
        )
        if not hmac.compare_digest(expected, creds.response):
            return Verification(Verdict.WRONG_PASSWORD, creds.username, creds)
        # The password is right. Is the nonce still fresh, and is this not a replay?
        self._expire(now)
        if now - issued > self.nonce_lifetime or issued * 1000 <= self._forgotten_before:
            return Verification(Verdict.STALE_NONCE, creds.username, creds)
        count = creds.nonce_count
        previous = self._seen.get(creds.nonce)
        if count is None:
            # RFC 2069 style: no nc to count with, so a nonce answers one request only; the
            # client is sent stale=TRUE and retries without asking its user again.
            if previous is not None:
                return Verification(Verdict.STALE_NONCE, creds.username, creds)
            count = 0
        elif previous is not None and count <= previous:
            return Verification(Verdict.REPLAY, creds.username, creds)
        self._remember(creds.nonce, count)
        return Verification(Verdict.OK, creds.username, creds)

    def _remember(self, nonce: str, count: int) -> None:
        self._seen[nonce] = count
        self._seen.move_to_end(nonce)
        while len(self._seen) > self._max_tracked:
            old, _ = self._seen.popitem(last=False)
            issued = self._nonce_time(old)
            if issued is not None:
                self._forgotten_before = max(self._forgotten_before, issued * 1000)

    def _expire(self, now: float) -> None:
        # Entries are oldest-first by last use; drop those whose nonce has expired anyway.
        while self._seen:
            nonce = next(iter(self._seen))
            issued = self._nonce_time(nonce)
            if issued is not None and now - issued <= self.nonce_lifetime:
                break
            self._seen.popitem(last=False)


# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------


class DigestClient:
    """Answer Digest challenges for one account (RFC 3261 §22.2, RFC 7616 §3.4, RFC 8760).

    Give it the password, or only the HA1 values (:class:`HA1`). It remembers the last challenge
    per realm so that later requests can be authorised up front with an increasing ``nc``.
    """

    def __init__(self, username: str, password: str | None = None, *, ha1: HA1 | None = None):
        if password is None and ha1 is None:
            raise ValueError("need a password or HA1 values")
        self.username = username
        self._password = password
        self._ha1 = ha1
        self._nc: dict[str, int] = {}
        self._last: dict[str, Challenge] = {}

    def supports(self, challenge: Challenge) -> bool:
        try:
            _base_algorithm(challenge.algorithm)
        except AuthParseError:
            return False
        if challenge.qop and not {"auth", "auth-int"} & set(challenge.qop):
            return False
        return self._ha1_for(challenge) is not None

    def _ha1_for(self, challenge: Challenge) -> str | None:
        if self._password is not None:
            return _h(challenge.algorithm, f"{self.username}:{challenge.realm}:{self._password}")
        assert self._ha1 is not None
        return self._ha1.for_algorithm(challenge.algorithm)

    def choose(self, challenges: Iterable[str | Challenge]) -> Challenge:
        """RFC 8760 §2.4: the topmost challenge whose algorithm we support.

        Raises :class:`AuthParseError` if none is usable.
        """
        for value in challenges:
            try:
                challenge = value if isinstance(value, Challenge) else parse_challenge(value)
            except AuthParseError:
                continue
            if self.supports(challenge):
                return challenge
        raise AuthParseError("No supported Digest challenge", status=401)

    def authorization(
        self,
        challenge: Challenge | str,
        *,
        method: str,
        uri: str,
        body: bytes = b"",
        cnonce: str | None = None,
    ) -> str:
        """An Authorization/Proxy-Authorization value answering ``challenge`` for a request."""
        if isinstance(challenge, str):
            challenge = parse_challenge(challenge)
        ha1 = self._ha1_for(challenge)
        if ha1 is None:
            raise AuthParseError(f"No secret for algorithm {challenge.algorithm}", status=401)
        qop = None
        if challenge.qop:
            qop = "auth" if "auth" in challenge.qop else "auth-int"
        nc = cnonce_value = None
        if qop is not None or challenge.algorithm.upper().endswith("-SESS"):
            count = self._nc.pop(challenge.nonce, 0) + 1
            self._nc[challenge.nonce] = count  # most recent last
            while len(self._nc) > 32:  # a proxy and a UAS may each have a nonce in use
                del self._nc[next(iter(self._nc))]
            nc = f"{count:08x}"
            cnonce_value = cnonce if cnonce is not None else secrets.token_hex(12)
        self._last[challenge.realm] = challenge
        response = digest_response(
            algorithm=challenge.algorithm,
            ha1=ha1,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc if qop else None,
            cnonce=cnonce_value,
            body=body,
        )
        return str(
            Credentials(
                username=self.username,
                realm=challenge.realm,
                nonce=challenge.nonce,
                uri=uri,
                response=response,
                algorithm=challenge.algorithm,
                cnonce=cnonce_value if qop else None,
                opaque=challenge.opaque,
                qop=qop,
                nc=nc if qop else None,
            )
        )

    def answer(
        self,
        status: int,
        challenge_values: Iterable[str],
        *,
        method: str,
        uri: str,
        body: bytes = b"",
    ) -> tuple[str, str]:
        """(header name, value) answering a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate)."""
        challenge = self.choose(challenge_values)
        name = "Proxy-Authorization" if status == 407 else "Authorization"
        return name, self.authorization(challenge, method=method, uri=uri, body=body)

    def reauthorize(self, realm: str, *, method: str, uri: str, body: bytes = b"") -> str | None:
        """Authorise a later request up front with the last nonce of ``realm`` (nc + 1)."""
        challenge = self._last.get(realm)
        if challenge is None:
            return None
        return self.authorization(challenge, method=method, uri=uri, body=body)
