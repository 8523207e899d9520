"""Registrar (RFC 3261 §10.3), sans-IO: a REGISTER in, a response out, bindings updated in the
:class:`~dialbridge.sip.location.LocationService`.

The steps below follow §10.3's numbering. Authentication is delegated to an
:class:`Authenticator` (digest, from :mod:`dialbridge.sip.auth`), so this module does no
cryptography. The time given to :meth:`Registrar.handle` is wall-clock seconds, because
bindings outlive a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .auth import HA1, DigestChallenger
from .auth import Verdict as AuthVerdict
from .flow import Flow
from .location import Binding, LocationService, aor_of
from .message import NameAddr, Request, Response, SipParseError, make_response, new_tag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthOutcome:
    """What an authenticator says about a request.

    ``user`` is the authenticated name on success. Otherwise ``status`` is the answer (401/407
    to challenge, 403 to refuse) and ``headers`` carry the challenge.
    """

    user: str | None = None
    status: int = 401
    headers: tuple[tuple[str, str], ...] = ()
    #: Credentials were presented and were wrong (counts towards a source's ban).
    failed: bool = False

    @property
    def ok(self) -> bool:
        return self.user is not None


class Authenticator(Protocol):
    def authenticate(self, request: Request, now: float, *, proxy: bool = False) -> AuthOutcome: ...


@dataclass
class Registrar:
    location: LocationService
    authenticator: Authenticator | None = None
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 600
    #: Users allowed to register any AOR (none by default: the digest user must own the AOR).
    admins: frozenset[str] = field(default_factory=frozenset)
    #: Called with the flow of every REGISTER that presented wrong credentials.
    on_auth_failure: Callable[[Flow], None] | None = None

    def handle(self, request: Request, flow: Flow, now: float) -> Response:
        try:
            return self._handle(request, flow, now)
        except SipParseError as exc:
            log.info("bad REGISTER from %s: %s", flow, exc)
            return make_response(request, 400, exc.reason, to_tag=new_tag())

    def _handle(self, request: Request, flow: Flow, now: float) -> Response:
        to_tag = new_tag()
        # Step 3: authentication.
        user = None
        if self.authenticator is not None:
            outcome = self.authenticator.authenticate(request, now)
            if not outcome.ok:
                if outcome.failed and self.on_auth_failure is not None:
                    self.on_auth_failure(flow)
                return make_response(
                    request, outcome.status, to_tag=to_tag, headers=outcome.headers
                )
            user = outcome.user
        # Step 5: the address-of-record is the To URI.
        to_uri = request.to_addr.uri
        if to_uri.scheme not in ("sip", "sips"):
            return make_response(request, 404, "Unsupported AOR", to_tag=to_tag)
        aor = aor_of(to_uri)
        # Step 4: the authenticated user must be allowed to register this AOR.
        if user is not None and user != to_uri.user and user not in self.admins:
            return make_response(request, 403, to_tag=to_tag)

        values = request.headers.get_all("Contact")
        header_expires = _expires_header(request)
        call_id = request.call_id
        cseq = request.cseq[0]
        current = {b.contact: b for b in self.location.bindings(aor, now)}

        if values == ["*"]:
            # Step 6: "*" is only valid with Expires: 0 (and alone).
            if header_expires != 0:
                return make_response(request, 400, "Wildcard needs Expires: 0", to_tag=to_tag)
            if any(b.call_id == call_id and cseq <= b.cseq for b in current.values()):
                return make_response(request, 500, "CSeq Out of Order", to_tag=to_tag)
            self.location.replace(aor, [], None, now)
            return self._ok(request, aor, now, to_tag)
        if "*" in values:
            return make_response(request, 400, "Wildcard mixed with contacts", to_tag=to_tag)

        updated = dict(current)
        user_agent = request.headers.get("User-Agent") or ""
        for contact in request.contacts:
            expires = _contact_expires(contact, header_expires, self.default_expires)
            if 0 < expires < self.min_expires:
                return make_response(
                    request,
                    423,
                    to_tag=to_tag,
                    headers=[("Min-Expires", str(self.min_expires))],
                )
            expires = min(expires, self.max_expires)
            key = str(contact.uri)
            existing = updated.get(key)
            # Step 7: the same Call-ID must bring a higher CSeq.
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                return make_response(request, 500, "CSeq Out of Order", to_tag=to_tag)
            if expires == 0:
                updated.pop(key, None)
                continue
            updated[key] = Binding(
                aor=aor,
                contact=key,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                flow_key=flow.key,
                q=_q(contact),
                user_agent=user_agent,
                contact_params=_extra_params(contact),
            )
        if request.contacts:
            self.location.replace(aor, list(updated.values()), flow, now)
            log.info("REGISTER %s: %d binding(s) via %s", aor, len(updated), flow)
        return self._ok(request, aor, now, to_tag)

    def _ok(self, request: Request, aor: str, now: float, to_tag: str) -> Response:
        # Step 8: the 200 lists every current binding with its remaining time.
        headers = []
        for binding in self.location.bindings(aor, now):
            params = f";expires={binding.remaining(now)}"
            if binding.q != 1.0:
                params += f";q={binding.q:g}"
            headers.append(("Contact", f"<{binding.contact}>{binding.contact_params}{params}"))
        return make_response(request, 200, to_tag=to_tag, headers=headers)


def _expires_header(request: Request) -> int | None:
    text = request.headers.get("Expires")
    if text is None:
        return None
    text = text.strip()
    if not text.isdigit():
        raise SipParseError("Bad Expires")
    return min(int(text), 2**32 - 1)


def _contact_expires(contact: NameAddr, header: int | None, default: int) -> int:
    value = contact.params.get("expires")
    if value is not None:
        if not value.strip().isdigit():
            raise SipParseError("Bad Contact expires")
        return int(value)
    return header if header is not None else default


def _q(contact: NameAddr) -> float:
    try:
        return max(0.0, min(1.0, float(contact.params.get("q") or 1.0)))
    except ValueError:
        return 1.0


def _extra_params(contact: NameAddr) -> str:
    parts = []
    for name, value in contact.params.items():
        if name in ("expires", "q"):
            continue
        parts.append(name if value is None else f"{name}={value}")
    return "".join(f";{p}" for p in parts)


class DigestAuthenticator:
    """:class:`Authenticator` on top of :class:`~dialbridge.sip.auth.DigestChallenger`.

    ``users`` maps user names to passwords (or :class:`~dialbridge.sip.auth.HA1` values). A
    REGISTER with wrong credentials is challenged again (what UAs expect); any other request
    with wrong credentials gets 403 without detail (security.py rule 8).
    """

    def __init__(self, realm: str, users: Mapping[str, str | HA1], *,
                 challenger: DigestChallenger | None = None) -> None:  # fmt: skip
        self.users = users
        self.challenger = challenger or DigestChallenger(realm)

    def _lookup(self, username: str, realm: str) -> str | HA1 | None:
        return self.users.get(username)

    def authenticate(self, request: Request, now: float, *, proxy: bool = False) -> AuthOutcome:
        challenger = self.challenger
        values = request.headers.get_all(challenger.credentials_header)
        for value in values:
            result = challenger.verify(
                value,
                method=request.method,
                now=now,
                lookup=self._lookup,
                request_uri=request.uri,
                body=request.body,
            )
            if result.ok:
                return AuthOutcome(user=result.username)
            if result.verdict in (AuthVerdict.MALFORMED, AuthVerdict.URI_MISMATCH):
                return AuthOutcome(status=400)
            if result.verdict is AuthVerdict.STALE_NONCE:
                return self._challenge(now, stale=True)
            wrong = result.verdict in (
                AuthVerdict.WRONG_PASSWORD,
                AuthVerdict.UNKNOWN_USER,
                AuthVerdict.REPLAY,
            )
            if wrong and request.method != "REGISTER":
                return AuthOutcome(status=403, failed=True)
            if wrong:
                return self._challenge(now, failed=True)
        return self._challenge(now)

    def _challenge(self, now: float, *, stale: bool = False, failed: bool = False) -> AuthOutcome:
        name = self.challenger.challenge_header
        values = self.challenger.challenges(now, stale=stale)
        return AuthOutcome(
            status=self.challenger.status,
            headers=tuple((name, v) for v in values),
            failed=failed,
        )
