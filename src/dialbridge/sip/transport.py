"""SIP transports (RFC 3261 §18): the asyncio edge that moves bytes. UDP, TCP and TLS.

Theory of operation
-------------------
* This module parses and serialises, frames streams (via
  :class:`~dialbridge.sip.message.StreamFramer`), answers CRLF keep-alives (RFC 5626 §3.5.1:
  CRLFCRLF → CRLF) and hands every message to its user with the :class:`Flow` it came on.
  It holds no SIP state: everything else happens in the sans-IO cores.
* A flow for UDP is (our listening socket, remote address): sending on it leaves from the
  listening port, which is what Jigasi checks (jigasi-protocol.md §1.1). A flow for TCP/TLS
  holds the connection; an outgoing request to an address we already have a connection with
  reuses it (RFC 3261 §18.1.1, RFC 5923 spirit).
* A malformed message is answered 400 when it parsed far enough to build a response (§21.4.1),
  else dropped and logged. Nothing a peer sends raises out of here.
* Works the same on the default event loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
from typing import Protocol

from .flow import DEFAULT_PORTS, Flow, response_flow, stamp_received
from .message import (
    KeepAlive,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    make_response,
    parse_message,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 65535


class TransportUser(Protocol):
    def message_received(self, message: Request | Response, flow: Flow) -> None: ...

    def flow_closed(self, flow: Flow) -> None: ...


class TransportError(OSError):
    """We could not send on a flow (its connection is gone, or connecting failed)."""


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransports, local: tuple[str, int]) -> None:
        self.owner = owner
        self.local = local
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        remote = (addr[0], addr[1])
        if not data.strip(b"\r\n\x00 "):
            return  # keep-alive datagram (CRLF or empty): nothing to answer on UDP
        flow = Flow("udp", self.local, remote)
        try:
            message = parse_message(data, max_size=MAX_MESSAGE_SIZE)
        except SipParseError as exc:
            self.owner._reject_malformed(exc, flow)
            return
        self.owner._deliver(message, flow)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error on %s: %s", self.local, exc)

    def send(self, data: bytes, remote: tuple[str, int]) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError("UDP socket closed")
        self.transport.sendto(data, remote)


class _StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, accepted or opened by us."""

    def __init__(
        self, owner: SipTransports, kind: str, local: tuple[str, int], *, accepted: bool = False
    ) -> None:
        self.owner = owner
        self.kind = kind
        self.local = local
        self.accepted = accepted
        self.framer = StreamFramer(max_size=MAX_MESSAGE_SIZE)
        self.transport: asyncio.Transport | None = None
        self.flow: Flow | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._silence: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.flow = Flow(self.kind, self.local, (peer[0], peer[1]), connection=self)
        self.owner._connections[(self.kind, self.flow.remote)] = self
        if not self.accepted:
            return
        count = self.owner._per_ip.get(peer[0], 0) + 1
        self.owner._per_ip[peer[0]] = count
        if count > self.owner.max_connections_per_ip:
            log.info("closing %s: over %d connections from %s", self.flow,
                     self.owner.max_connections_per_ip, peer[0])  # fmt: skip
            transport.close()
            return
        # A connection that never says anything SIP is a port scan or a slow-loris: drop it.
        self._silence = asyncio.get_running_loop().call_later(
            self.owner.first_message_timeout, self._close_silent
        )

    def _close_silent(self) -> None:
        self._silence = None
        if self.transport is not None and not self.transport.is_closing():
            log.info("closing %s: no SIP message within %.0fs", self.flow,
                     self.owner.first_message_timeout)  # fmt: skip
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        assert self.flow is not None
        for item in self.framer.feed(data):
            if isinstance(item, KeepAlive):
                if item.ping:
                    self._write(b"\r\n")  # RFC 5626 §4.4.1: pong
            elif isinstance(item, SipParseError):
                self.owner._reject_malformed(item, self.flow)
            else:
                if self._silence is not None:
                    self._silence.cancel()
                    self._silence = None
                self.owner._deliver(item, self.flow)
        if self.framer.broken and self.transport is not None:
            log.info("closing %s: framing broken", self.flow)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        if self.flow is None:
            return
        if self.accepted:
            ip = self.flow.remote[0]
            left = self.owner._per_ip.get(ip, 1) - 1
            if left > 0:
                self.owner._per_ip[ip] = left
            else:
                self.owner._per_ip.pop(ip, None)
        key = (self.kind, self.flow.remote)
        if self.owner._connections.get(key) is self:
            del self.owner._connections[key]
        self.owner._flow_closed(self.flow)

    def _write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError(f"{self.kind} connection closed")
        self.transport.write(data)

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


class SipTransports:
    def __init__(
        self,
        user: TransportUser,
        *,
        advertised_host: str | None = None,
        client_ssl: ssl.SSLContext | None = None,
        max_connections_per_ip: int = 64,
        first_message_timeout: float = 30.0,
    ) -> None:
        self.user = user
        self.advertised_host = advertised_host
        self.client_ssl = client_ssl
        #: Accepted TCP/TLS connections allowed from one IP address.
        self.max_connections_per_ip = max_connections_per_ip
        #: An accepted connection that sends no SIP message within this time is closed.
        self.first_message_timeout = first_message_timeout
        self._per_ip: dict[str, int] = {}
        self._udp: dict[tuple[str, int], _UdpEndpoint] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._listening: dict[str, tuple[str, int]] = {}
        self._connections: dict[tuple[str, tuple[str, int]], _StreamConnection] = {}

    # -- listeners ----------------------------------------------------------------------------

    async def listen(
        self, kind: str, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        """Start a UDP, TCP or TLS listener; returns the (advertised) local address."""
        loop = asyncio.get_running_loop()
        if kind == "udp":
            transport, endpoint = await loop.create_datagram_endpoint(
                lambda: _UdpEndpoint(self, ("", 0)), local_addr=(host, port)
            )
            bound = transport.get_extra_info("sockname")
            local = (self._advertise(bound[0]), bound[1])
            endpoint.local = local
            self._udp[local] = endpoint
        elif kind in ("tcp", "tls"):
            if kind == "tls" and ssl_context is None:
                raise ValueError("TLS listener needs an ssl_context")
            holder: dict[str, tuple[str, int]] = {}
            server = await loop.create_server(
                lambda: _StreamConnection(self, kind, holder["local"], accepted=True),
                host,
                port,
                ssl=ssl_context if kind == "tls" else None,
                reuse_address=True,
            )
            bound = server.sockets[0].getsockname()
            local = (self._advertise(bound[0]), bound[1])
            holder["local"] = local
            self._servers.append(server)
        else:
            raise ValueError(f"unknown transport {kind!r}")
        self._listening.setdefault(kind, local)
        log.info("SIP listening on %s %s:%d", kind, *local)
        return local

    def local_address(self, kind: str) -> tuple[str, int] | None:
        return self._listening.get(kind)

    def _advertise(self, bound_host: str) -> str:
        if self.advertised_host:
            return self.advertised_host
        if bound_host in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return bound_host

    # -- flows --------------------------------------------------------------------------------

    async def flow_to(
        self, kind: str, remote: tuple[str, int], *, server_hostname: str | None = None
    ) -> Flow:
        """A flow to ``remote``: the UDP listening socket, or an open/new TCP/TLS connection."""
        remote = (await _resolve(remote[0]), remote[1] or DEFAULT_PORTS[kind])
        if kind == "udp":
            local = self._listening.get("udp")
            if local is None:
                raise TransportError("no UDP listener")
            return Flow("udp", local, remote)
        existing = self._connections.get((kind, remote))
        if existing is not None and existing.open and existing.flow is not None:
            return existing.flow
        local = self._listening.get(kind) or self._listening.get("tcp") or ("127.0.0.1", 0)
        loop = asyncio.get_running_loop()
        context = None
        if kind == "tls":
            context = self.client_ssl or ssl.create_default_context()
        try:
            _, connection = await loop.create_connection(
                lambda: _StreamConnection(self, kind, local),
                remote[0],
                remote[1],
                ssl=context,
                server_hostname=(server_hostname or remote[0]) if context else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot connect {kind} to {remote}: {exc}") from exc
        assert connection.flow is not None
        return connection.flow

    def send(self, message: Request | Response, flow: Flow) -> None:
        """Send on ``flow``; raises :class:`TransportError` when the flow is gone."""
        data = message.to_bytes()
        if flow.transport == "udp":
            endpoint = self._udp.get(flow.local) or next(iter(self._udp.values()), None)
            if endpoint is None:
                raise TransportError("no UDP socket")
            endpoint.send(data, flow.remote)
            return
        connection = flow.connection
        if not isinstance(connection, _StreamConnection) or not connection.open:
            # A flow rebuilt from a key, or one whose connection dropped: use any live
            # connection to the same address (the peer may have reconnected).
            connection = self._connections.get((flow.transport, flow.remote))
            if connection is None or not connection.open:
                raise TransportError(f"no open connection for {flow}")
        connection._write(data)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self._connections.values()):
            if connection.transport is not None:
                connection.transport.close()
        for endpoint in self._udp.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        # Wait for the sockets to be really closed, so the ports can be bound again at once.
        waiting = [e.closed for e in self._udp.values() if e.transport is not None]
        waiting += [c.closed for c in self._connections.values()]
        if waiting:
            await asyncio.wait(waiting, timeout=1.0)
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        self._udp.clear()

    # -- delivery -----------------------------------------------------------------------------

    def _deliver(self, message: Request | Response, flow: Flow) -> None:
        try:
            self.user.message_received(message, flow)
        except SipParseError as exc:
            self._reject_malformed(SipParseError(exc.reason, exc.status, message=message), flow)
        except Exception:  # noqa: BLE001 - a bug above us must not kill the listener
            log.exception("error handling message from %s", flow)

    def _flow_closed(self, flow: Flow) -> None:
        try:
            self.user.flow_closed(flow)
        except Exception:  # noqa: BLE001
            log.exception("error handling closed flow %s", flow)

    def _reject_malformed(self, exc: SipParseError, flow: Flow) -> None:
        message = exc.message
        if isinstance(message, Request) and message.method != "ACK":
            try:
                stamp_received(message, flow.remote)  # RFC 3581: answer where it came from
                response = make_response(message, exc.status, exc.reason)
                target = response_flow(flow, response.vias[0])
                self.send(response, target)
                log.info(
                    "answered %d to malformed request from %s: %s", exc.status, flow, exc.reason
                )
                return
            except (SipParseError, ValueError, IndexError, TransportError):
                pass
        log.info("dropped malformed message from %s: %s", flow, exc)


async def _resolve(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=0)
    if not infos:
        raise TransportError(f"cannot resolve {host}")
    return infos[0][4][0]


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
