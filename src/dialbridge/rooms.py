"""Conference JIDs as Jitsi's back end names them.

The Meet front end sends the room as the browser shows it (``MyRoom``, ``Caf%C3%A9``), but it
joins the MUC ``getBackendSafeRoomName(room)`` =
``lower(encodeURIComponent(lower(NFKC(decodeURIComponent(room)))))`` (meet-services.md §2.2).
Prosody, Jicofo and Jigasi only ever see that form, so we key mappings by it and hand it to
Jigasi. Tenant rooms arrive as ``room@conference.<tenant>.<domain>`` and are kept that way:
Jigasi understands that form (jitsi/jigasi CallContext).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote

# encodeURIComponent leaves A-Z a-z 0-9 and - _ . ! ~ * ' ( ) alone; quote() always keeps
# letters, digits and "_.-~", so the rest is the safe set.
_URI_COMPONENT_SAFE = "!*'()"
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
MAX_ROOM_LENGTH = 1023  # XMPP localpart limit in bytes (RFC 7622 §3.3.1); our form is ASCII


class InvalidConference(ValueError):
    """The conference, room or domain given cannot name a Jitsi MUC room."""


@dataclass(frozen=True, slots=True)
class Conference:
    room: str  # canonical, percent-encoded, lower case
    domain: str  # MUC domain, lower case, e.g. conference.meet.example.com

    @property
    def jid(self) -> str:
        return f"{self.room}@{self.domain}"

    def __str__(self) -> str:
        return self.jid


def canonical_room(room: str) -> str:
    """``getBackendSafeRoomName``: every spelling of one room gives one string."""
    try:
        decoded = unquote(room, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidConference("room name is not UTF-8 after percent-decoding") from None
    folded = unicodedata.normalize("NFKC", decoded).lower()
    if not folded.strip():
        raise InvalidConference("room name is empty")
    encoded = quote(folded, safe=_URI_COMPONENT_SAFE).lower()
    if len(encoded) > MAX_ROOM_LENGTH:
        raise InvalidConference(f"room name longer than {MAX_ROOM_LENGTH} characters when encoded")
    return encoded


def canonical_domain(domain: str) -> str:
    domain = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(domain):
        raise InvalidConference(f"{domain!r} is not a MUC domain like conference.meet.example.com")
    return domain


def parse_conference(value: str) -> Conference:
    """``room@muc`` as Meet sends it → the canonical :class:`Conference`."""
    room, sep, domain = value.strip().rpartition("@")
    if not sep or not room:
        raise InvalidConference("conference must be room@conference.<domain>")
    return Conference(canonical_room(room), canonical_domain(domain))


def conference_from_parts(room: str, domain: str) -> Conference:
    return Conference(canonical_room(room), canonical_domain(domain))


def tenant_of(domain: str, base_domains: list[str]) -> str | None:
    """``conference.acme.meet.example.com`` with base ``conference.meet.example.com`` → ``acme``."""
    for base in base_domains:
        head, _, rest = base.partition(".")
        prefix = f"{head}."
        suffix = f".{rest}"
        if domain.startswith(prefix) and domain.endswith(suffix):
            tenant = domain[len(prefix) : len(domain) - len(suffix)]
            if tenant and "." not in tenant:
                return tenant
    return None


def domain_allowed(domain: str, allowed: list[str], *, allow_tenants: bool) -> bool:
    """Empty ``allowed`` means every domain is served."""
    if not allowed or domain in allowed:
        return True
    return allow_tenants and tenant_of(domain, allowed) is not None
