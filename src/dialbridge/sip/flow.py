"""Flows: the path a SIP message travels on (RFC 5626 §3 vocabulary), and the address rules
of RFC 3261 §18 and RFC 3581 that pick a flow for a response.

A :class:`Flow` names a transport, our local socket and the remote address; for TCP and TLS it
also holds the connection, so two flows to the same address over different connections differ.
That difference matters: Jigasi accepts requests only on the flow its REGISTER came in on
(jigasi-protocol.md §1.1), so the registrar keeps the flow and the UA sends on it.

This module is pure: the asyncio edge (:mod:`dialbridge.sip.transport`) creates flows and moves
bytes; the sans-IO cores only carry them around and compare them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .message import Headers, Request, Via

RELIABLE_TRANSPORTS = frozenset({"tcp", "tls"})
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True)
class Flow:
    transport: str  # "udp", "tcp" or "tls"
    local: tuple[str, int]
    remote: tuple[str, int]
    # The stream connection for TCP/TLS (compared by identity); None for UDP.
    connection: object | None = None

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS

    @property
    def key(self) -> str:
        """A printable, persistable name: ``udp:127.0.0.1:5060->127.0.0.1:40000``."""
        return (
            f"{self.transport}:{self.local[0]}:{self.local[1]}->{self.remote[0]}:{self.remote[1]}"
        )

    @classmethod
    def from_key(cls, key: str) -> Flow:
        """Rebuild a flow from :attr:`key`, without a connection (used after a restart)."""
        transport, _, rest = key.partition(":")
        local, _, remote = rest.partition("->")
        lhost, _, lport = local.rpartition(":")
        rhost, _, rport = remote.rpartition(":")
        return cls(transport, (lhost, int(lport)), (rhost, int(rport)))

    def __str__(self) -> str:
        return self.key


def stamp_received(request: Request, source: tuple[str, int]) -> Via | None:
    """§18.2.1 and RFC 3581 §4: record where the request really came from in its top Via.

    ``received`` is added when the source IP differs from sent-by, and always when the client
    asked for ``rport`` (which is then filled with the source port).
    """
    values = request.headers.get_all("Via")
    if not values:
        return None
    top = Via.parse(values[0])
    changed = False
    if "rport" in top.params and top.params["rport"] in (None, ""):
        top.params["rport"] = str(source[1])
        top.params["received"] = source[0]
        changed = True
    elif top.host != source[0]:
        top.params["received"] = source[0]
        changed = True
    if changed:
        _replace_top_via(request, str(top))
    return top


def _replace_top_via(request: Request, value: str) -> None:
    # Rewrite the Via lines in place; the first value may be part of a comma-joined line.
    values = request.headers.get_all("Via")
    values[0] = value
    rebuilt = Headers()
    placed = False
    for name, item in request.headers.items():
        if name != "Via":
            rebuilt.add(name, item)
        elif not placed:
            for via in values:
                rebuilt.add("Via", via)
            placed = True
    request.headers = rebuilt


def response_flow(request_flow: Flow, top_via: Via) -> Flow:
    """Where a response to a request received on ``request_flow`` goes (§18.2.2, RFC 3581 §4).

    Reliable transports answer on the connection the request came in on. Over UDP the response
    leaves from the same local socket, to ``received``:``rport`` when the client asked for rport,
    else to ``received`` (or sent-by) at the sent-by port.
    """
    if request_flow.reliable:
        return request_flow
    host = top_via.params.get("received") or top_via.host
    rport = top_via.params.get("rport")
    port = int(rport) if rport else top_via.port or DEFAULT_PORTS["udp"]
    if (host, port) == request_flow.remote:
        return request_flow
    return Flow("udp", request_flow.local, (host, port))


_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=[ \t]*([^;, \t]+)", re.I)


def tag_of(value: str | None) -> str | None:
    """The ``tag`` parameter of a From/To value, without a full parse.

    Equivalent to ``NameAddr.parse(value).tag`` for well-formed values (header parameters follow
    the ``>`` of a name-addr; an addr-spec carries no URI parameters, §20.10), but several times
    cheaper; transactions and dialogs look tags up on every message.
    """
    if value is None:
        return None
    close = value.rfind(">")
    match = _TAG_RE.search(value, close + 1 if close >= 0 else 0)
    return match.group(1) if match else None
