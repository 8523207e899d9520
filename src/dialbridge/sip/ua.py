"""The SIP user agent: the async API the call engine stands on.

Theory of operation
-------------------
* :class:`UserAgent` glues the sans-IO cores to asyncio. It owns the
  :class:`~dialbridge.sip.dialog.DialogLayer` (dialogs over transactions), the
  :class:`~dialbridge.sip.registrar.Registrar` with its
  :class:`~dialbridge.sip.location.LocationService`, the edge
  :class:`~dialbridge.sip.security.EdgePolicy` and the
  :class:`~dialbridge.sip.transport.SipTransports`. After every input (a message, a timer) it
  runs :meth:`UserAgent._service`: send what the core wants sent, dispatch its events, re-arm
  the single timer. The core's clock is ``loop.time()``; bindings use ``time.time()``.
* Outgoing: :meth:`UserAgent.invite` returns an :class:`OutgoingCall` (responses as an async
  iterator, ``cancel()``, ``answered()`` → :class:`DialogHandle`). 401/407 are answered with
  the given credentials once per challenge (RFC 3261 §22.2).
* Incoming: a new INVITE becomes an :class:`IncomingCall` handed to the ``router`` coroutine,
  which rings, answers, rejects or redirects it.
* In a dialog (:class:`DialogHandle`): ``info()``, ``request()``, ``reinvite()``, ``bye()``
  return the final response; ``events()`` yields what the peer did; ``terminated`` resolves
  with the reason. **Every in-dialog request from the peer is answered by this module at
  once** (INFO 200 unless ``on_info`` says otherwise, re-INVITE/UPDATE with ``on_offer``'s
  SDP, BYE 200, OPTIONS 200): Jigasi hangs up when its requests go unanswered
  (jigasi-protocol.md §4.1), so answering is never left to application code that may stall.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field

from .auth import AuthParseError, DigestChallenger, DigestClient
from .dialog import (
    ALLOWED_METHODS,
    Dialog,
    DialogAckReceived,
    DialogLayer,
    DialogTerminated,
    IncomingRequest,
    InDialogRequest,
    InviteCancelled,
    ResponseToRequest,
    build_request,
)
from .flow import DEFAULT_PORTS, Flow
from .location import BindingStore, LocationService, Reachable
from .message import Request, Response, SipUri, make_response, new_call_id, new_tag
from .registrar import Authenticator, AuthOutcome, DigestAuthenticator, Registrar
from .security import EdgePolicy, Trunk, Verdict
from .timers import DEFAULT_TIMERS, TimerSettings
from .transaction import ClientTransaction, ServerTransaction, TransactionError
from .transport import SipTransports, TransportError, server_ssl_context

log = logging.getLogger(__name__)

ALLOW = ", ".join(ALLOWED_METHODS)
#: Option tags we can honour in Require (none yet: no 100rel, no session timers).
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()
HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]]


class SipError(Exception):
    """Base of the errors this API raises."""


class CallFailed(SipError):
    """An INVITE ended without a 2xx; ``response`` is the final answer (maybe synthetic 408)."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"{response.status} {response.reason}")
        self.response = response


class CallStateError(SipError):
    """A local error: the call or dialog cannot do that in its current state."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass
class UserAgentConfig:
    udp: list[tuple[str, int]] = field(default_factory=list)
    tcp: list[tuple[str, int]] = field(default_factory=list)
    tls: list[tuple[str, int]] = field(default_factory=list)
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Host put in Via/Contact when listeners bind to a wildcard address.
    advertised_host: str | None = None
    #: Our SIP domain (default From host) and digest realm.
    domain: str = "dialbridge.invalid"
    #: Registrar / digest accounts: user name → password.
    users: Mapping[str, str] = field(default_factory=dict)
    #: Digest algorithms we challenge with, most preferred first. MD5 alone by default:
    #: Jigasi answers MD5 only (jigasi-protocol.md §3), SIPp 3.6 reads only the first challenge
    #: and baresip 1.0 fails when SHA-256 is offered at all (measured, docs/sip-interop.md).
    digest_algorithms: tuple[str, ...] = ("MD5",)
    trunks: list[Trunk] = field(default_factory=list)
    timers: TimerSettings = DEFAULT_TIMERS
    user_agent: str = "dialbridge"
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 600
    binding_store: BindingStore | None = None
    flood_rate: float = 50.0
    flood_burst: float = 200.0
    #: Reject an incoming INVITE the router has not answered after this long (seconds).
    unanswered_timeout: float = 180.0
    #: Client TLS context for outgoing TLS connections (default: system trust).
    client_ssl: ssl.SSLContext | None = None


# ---------------------------------------------------------------------------------------------
# Events of a dialog, as the application sees them
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class InfoReceived:
    request: Request

    @property
    def content_type(self) -> str:
        return (self.request.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def body(self) -> bytes:
        return self.request.body


@dataclass(frozen=True, eq=False)
class OfferReceived:
    """A re-INVITE or UPDATE from the peer. ``answer`` is the SDP we sent back (or None)."""

    request: Request
    answer: bytes | None


@dataclass(frozen=True, eq=False)
class AckReceived:
    """The ACK for our 2xx; ``sdp`` is the answer of an offerless INVITE (or None)."""

    request: Request

    @property
    def sdp(self) -> bytes | None:
        return self.request.body or None


@dataclass(frozen=True, eq=False)
class ByeReceived:
    request: Request


@dataclass(frozen=True, eq=False)
class RequestReceived:
    """Any other in-dialog request (OPTIONS, NOTIFY, ...), already answered."""

    request: Request
    status: int


@dataclass(frozen=True, eq=False)
class DialogEnded:
    reason: str


DialogEventType = (
    InfoReceived | OfferReceived | AckReceived | ByeReceived | RequestReceived | DialogEnded
)

InfoResponder = Callable[[Request], "int | tuple[int, HeaderItems, bytes] | None"]
OfferResponder = Callable[[Request], "bytes | None"]


# ---------------------------------------------------------------------------------------------
# Pending client requests
# ---------------------------------------------------------------------------------------------


class _Pending:
    """Responses of one client transaction (and its authenticated retries)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Response] = asyncio.Queue()
        self.final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.challenged = False

    def deliver(self, response: Response, synthetic: bool) -> None:
        self.queue.put_nowait(response)
        if response.status >= 200 and not self.final.done():
            self.final.set_result(response)


# ---------------------------------------------------------------------------------------------
# Dialog handle
# ---------------------------------------------------------------------------------------------


class DialogHandle:
    """An established (or early, UAS side) dialog. Created by the UA, never by hand."""

    def __init__(self, ua: UserAgent, dialog: Dialog, *, local_sdp: bytes | None,
                 remote_sdp: bytes | None) -> None:  # fmt: skip
        self._ua = ua
        self.dialog = dialog
        self.local_sdp = local_sdp
        self.remote_sdp = remote_sdp
        loop = asyncio.get_running_loop()
        #: Resolves with the reason once the dialog is over ("bye", "remote bye", ...).
        self.terminated: asyncio.Future[str] = loop.create_future()
        #: UAS: resolves with the ACK (its body is the answer to an offer we made in the 2xx).
        self.acked: asyncio.Future[Request] = loop.create_future()
        self._events: asyncio.Queue[DialogEventType] = asyncio.Queue()
        #: Decide the answer to an INFO: a status, (status, headers, body), or None for 200.
        self.on_info: InfoResponder | None = None
        #: Produce the SDP for a re-INVITE/UPDATE with (answer) or without (offer) SDP;
        #: default: our current local SDP.
        self.on_offer: OfferResponder | None = None
        #: Used when the peer challenges a request in this dialog (a trunk asking 407 on BYE);
        #: set from the INVITE's credentials for calls we placed.
        self.credentials: Credentials | None = None
        dialog.user_data = self

    @property
    def call_id(self) -> str:
        return self.dialog.call_id

    @property
    def flow(self) -> Flow:
        return self.dialog.flow

    @property
    def is_terminated(self) -> bool:
        return self.terminated.done()

    async def info(
        self, content_type: str, body: bytes | str, headers: HeaderItems = ()
    ) -> Response:
        """Send INFO (RFC 6086 legacy style, as Jigasi wants) and wait for its final response."""
        if isinstance(body, str):
            body = body.encode()
        return await self.request("INFO", body=body, content_type=content_type, headers=headers)

    async def request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                      headers: HeaderItems = (), credentials: Credentials | None = None) -> Response:  # fmt: skip
        """Send any in-dialog request and return its final response (408 if it timed out)."""
        if self.dialog.terminated and method != "BYE":
            raise CallStateError(f"dialog is over ({self.dialog.end_reason})")
        request = self.dialog.create_request(
            method, headers=_items(headers), body=body, content_type=content_type
        )
        return await self._ua._send_and_wait(
            request, self.dialog.flow, self.dialog, credentials or self.credentials
        )

    async def reinvite(self, sdp: bytes | None, headers: HeaderItems = ()) -> Response:
        """Send a re-INVITE; on 2xx the remote SDP is updated and the ACK sent."""
        response = await self.request(
            "INVITE", body=sdp or b"", content_type="application/sdp" if sdp else None,
            headers=headers,
        )  # fmt: skip
        if 200 <= response.status < 300:
            if sdp:
                self.local_sdp = sdp
            if response.body:
                self.remote_sdp = response.body
        return response

    async def bye(self, headers: HeaderItems = ()) -> Response | None:
        """End the dialog. Returns the BYE's final response, or None if already ended."""
        if self.dialog.terminated:
            return None
        response = await self.request("BYE", headers=headers)
        self._ua._dialog_ended(self, self.dialog.end_reason or "bye")
        return response

    async def events(self) -> AsyncIterator[DialogEventType]:
        """What the peer does in this dialog, ending with :class:`DialogEnded`."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, DialogEnded):
                return

    def _push(self, event: DialogEventType) -> None:
        self._events.put_nowait(event)

    def __repr__(self) -> str:
        return f"<DialogHandle {self.dialog.call_id} {self.dialog.state.value}>"


# ---------------------------------------------------------------------------------------------
# Outgoing call (UAC INVITE)
# ---------------------------------------------------------------------------------------------


class OutgoingCall:
    """An INVITE we sent. Iterate :meth:`responses`, await :meth:`answered`, or :meth:`cancel`."""

    def __init__(
        self, ua: UserAgent, request: Request, flow: Flow, credentials: Credentials | None
    ):
        self._ua = ua
        self.request = request
        self.flow = flow
        self.credentials = credentials
        self.transaction: ClientTransaction | None = None
        self._pending = _Pending()
        self._cancel_requested = False
        #: Set on 2xx.
        self.dialog: DialogHandle | None = None
        #: The final response, once there is one.
        self.final: asyncio.Future[Response] = self._pending.final
        self.offerless = not request.body

    async def responses(self) -> AsyncIterator[Response]:
        """Every response (provisional and final, 2xx retransmissions excluded), until final."""
        while True:
            response = await self._pending.queue.get()
            yield response
            if response.status >= 200:
                return

    async def answered(self) -> DialogHandle:
        """Wait for the final response: the dialog on 2xx, else :class:`CallFailed`."""
        response = await asyncio.shield(self.final)
        if 200 <= response.status < 300 and self.dialog is not None:
            return self.dialog
        raise CallFailed(response)

    async def cancel(self) -> None:
        """§9.1: CANCEL (sent once a provisional response has come)."""
        self._cancel_requested = True
        if self.transaction is not None and not self.final.done():
            self._ua._cancel(self.transaction)

    async def ack(self, sdp: bytes) -> None:
        """Offerless INVITE: send the ACK carrying our SDP answer to the offer in the 2xx."""
        response = self.final.result() if self.final.done() else None
        if response is None or not 200 <= response.status < 300 or self.transaction is None:
            raise CallStateError("no 2xx to acknowledge")
        self._ua._send_ack(self.transaction, response, sdp)
        if self.dialog is not None:
            self.dialog.local_sdp = sdp
            if not self.dialog.acked.done():
                self.dialog.acked.set_result(self.request)


# ---------------------------------------------------------------------------------------------
# Incoming call (UAS INVITE)
# ---------------------------------------------------------------------------------------------


class IncomingCall:
    """A new INVITE handed to the router: ring, progress, answer, reject or redirect it."""

    def __init__(self, ua: UserAgent, request: Request, transaction: ServerTransaction,
                 flow: Flow, *, trunk: Trunk | None, auth_user: str | None,
                 registered: bool) -> None:  # fmt: skip
        self._ua = ua
        self.request = request
        self.transaction = transaction
        self.flow = flow
        #: The trunk the source address belongs to, if any.
        self.trunk = trunk
        #: The digest user that authenticated the INVITE, if it was challenged.
        self.auth_user = auth_user
        #: True when the INVITE came on a flow of a registered contact (e.g. Jigasi).
        self.registered = registered
        #: The address-of-record registered over that flow ("sip:jigasi@example.org"), if any.
        self.registered_aor: str | None = ua.location.aor_for_flow(flow) if registered else None
        self.to_tag = new_tag()
        self.state = "new"
        #: Resolves when the caller cancels before we answer.
        self.cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.dialog: DialogHandle | None = None
        self._give_up: asyncio.TimerHandle | None = None

    def _settle(self) -> None:
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None

    @property
    def offer(self) -> bytes | None:
        return self.request.body or None

    @property
    def from_addr(self):
        return self.request.from_addr

    @property
    def to_addr(self):
        return self.request.to_addr

    @property
    def request_uri(self) -> SipUri:
        return SipUri.parse(self.request.uri)

    async def ring(self, headers: HeaderItems = ()) -> None:
        self._provisional(180, None, headers)

    async def progress(self, sdp: bytes | None = None, headers: HeaderItems = ()) -> None:
        self._provisional(183, sdp, headers)

    async def answer(self, sdp: bytes | None, headers: HeaderItems = ()) -> DialogHandle:
        """200 OK with ``sdp`` (our answer, or our offer for an offerless INVITE)."""
        self._check_open()
        response = self._response(200, sdp, headers)
        dialog = self._ua._respond(self.transaction, response)
        if dialog is None:
            raise CallStateError("no dialog was created")
        handle = dialog.user_data if isinstance(dialog.user_data, DialogHandle) else None
        if handle is None:
            handle = DialogHandle(self._ua, dialog, local_sdp=sdp, remote_sdp=self.offer)
        handle.local_sdp = sdp
        handle.remote_sdp = self.offer
        self.dialog = handle
        self.state = "answered"
        return handle

    async def reject(self, status: int = 486, reason: str | None = None,
                     headers: HeaderItems = ()) -> None:  # fmt: skip
        if not 300 <= status <= 699:
            raise ValueError("reject needs a 3xx-6xx status")
        self._check_open()
        self._ua._respond(self.transaction, self._response(status, None, headers, reason))
        self.state = "rejected"

    async def redirect(self, contacts: Iterable[str], status: int = 302) -> None:
        items = [("Contact", c if "<" in c else f"<{c}>") for c in contacts]
        await self.reject(status, headers=items)

    def _provisional(self, status: int, sdp: bytes | None, headers: HeaderItems) -> None:
        self._check_open()
        self._ua._respond(self.transaction, self._response(status, sdp, headers))
        self.state = "ringing"

    def _response(self, status: int, sdp: bytes | None, headers: HeaderItems,
                  reason: str | None = None) -> Response:  # fmt: skip
        response = make_response(self.request, status, reason, to_tag=self.to_tag)
        if status < 300:
            response.headers.add("Contact", self._ua._contact_for(self.flow))
            response.headers.add("Allow", ALLOW)
        response.headers.add("User-Agent", self._ua.config.user_agent)
        for name, value in _items(headers):
            response.headers.add(name, value)
        if sdp:
            response.body = sdp
            response.headers.set("Content-Type", "application/sdp")
        return response

    def _check_open(self) -> None:
        if self.cancelled.done():
            raise CallStateError("the caller cancelled")
        if self.state in ("answered", "rejected"):
            raise CallStateError(f"call already {self.state}")


class Registration:
    """Keeps one AOR registered with a remote registrar (a trunk), RFC 3261 §10.2.4: same
    Call-ID, increasing CSeq, refreshed at 80 % of the granted time, retried on failure."""

    def __init__(self, ua: UserAgent, registrar: str, aor: str,
                 credentials: Credentials | None, expires: int, retry_after: float) -> None:  # fmt: skip
        self._ua = ua
        self.registrar = registrar
        self.aor = aor
        self.credentials = credentials
        self.expires = expires
        self.retry_after = retry_after
        self.call_id = new_call_id()
        self.from_tag = new_tag()
        self.cseq = 1
        self.last_response: Response | None = None
        #: Set while the registrar holds a binding for us.
        self.registered = asyncio.Event()
        #: Granted expiry of the last successful REGISTER.
        self.granted: int | None = None
        self._task: asyncio.Task | None = None

    async def _once(self, expires: int) -> Response:
        # Reserve this CSeq and the one a digest retry uses before awaiting, so a REGISTER sent
        # while this one is in flight (stop() during a refresh) still counts upwards (§10.3).
        cseq = self.cseq
        self.cseq += 2
        response = await self._ua.register(
            self.registrar, self.aor, credentials=self.credentials, expires=expires,
            call_id=self.call_id, cseq=cseq, from_tag=self.from_tag,
        )  # fmt: skip
        self.cseq = max(self.cseq, response.cseq[0] + 1)
        self.last_response = response
        return response

    async def _run(self) -> None:
        while True:
            try:
                response = await self._once(self.expires)
            except SipError as exc:
                log.info("REGISTER %s to %s failed: %s", self.aor, self.registrar, exc)
                response = None
            if response is not None and 200 <= response.status < 300:
                self.granted = _granted_expires(response, self.expires)
                self.registered.set()
                await asyncio.sleep(max(1.0, 0.8 * self.granted))
            else:
                self.registered.clear()
                if response is not None and response.status == 423:
                    minimum = response.headers.get("Min-Expires") or ""
                    if minimum.isdigit():
                        self.expires = int(minimum)
                        continue
                await asyncio.sleep(self.retry_after)

    async def stop(self) -> Response | None:
        """Stop refreshing and remove the binding (Expires: 0)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.registered.is_set():
            return None
        self.registered.clear()
        return await self._once(0)


def _granted_expires(response: Response, asked: int) -> int:
    for contact in response.contacts:
        value = contact.params.get("expires")
        if value and value.isdigit():
            return int(value)
    header = response.headers.get("Expires")
    return int(header) if header and header.isdigit() else asked


Router = Callable[[IncomingCall], Awaitable[None]]


# ---------------------------------------------------------------------------------------------
# The user agent
# ---------------------------------------------------------------------------------------------


class UserAgent:
    def __init__(self, config: UserAgentConfig, *, router: Router | None = None,
                 authenticator: Authenticator | None = None) -> None:  # fmt: skip
        self.config = config
        self.router = router
        self.core = DialogLayer(config.timers)
        self.location = LocationService(config.binding_store)
        if authenticator is None and config.users:
            authenticator = DigestAuthenticator(
                config.domain,
                dict(config.users),
                challenger=DigestChallenger(config.domain, algorithms=config.digest_algorithms),
            )
        self.authenticator = authenticator
        self.registrar = Registrar(
            self.location,
            authenticator,
            min_expires=config.min_expires,
            max_expires=config.max_expires,
            default_expires=config.default_expires,
            on_auth_failure=self._auth_failed,
        )
        self.policy = EdgePolicy(
            trunks=list(config.trunks),
            flood_rate=config.flood_rate,
            flood_burst=config.flood_burst,
            digest_enabled=authenticator is not None,
        )
        self.transports = SipTransports(
            self, advertised_host=config.advertised_host, client_ssl=config.client_ssl
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self._incoming: dict[ServerTransaction, IncomingCall] = {}
        self._handles: set[DialogHandle] = set()
        self._cseq = itertools.count(1)
        self.local_addresses: dict[str, tuple[str, int]] = {}
        # Registrars we registered with: their requests are trusted.
        self._upstreams: set[tuple[str, int]] = set()
        #: Event counters for metrics (see :meth:`stats`).
        self.counters: collections.Counter[str] = collections.Counter()

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for host, port in self.config.udp:
            self.local_addresses.setdefault("udp", await self.transports.listen("udp", host, port))
        for host, port in self.config.tcp:
            self.local_addresses.setdefault("tcp", await self.transports.listen("tcp", host, port))
        if self.config.tls:
            if not (self.config.tls_cert and self.config.tls_key):
                raise ValueError("TLS listeners need tls_cert and tls_key")
            context = server_ssl_context(self.config.tls_cert, self.config.tls_key)
            for host, port in self.config.tls:
                local = await self.transports.listen("tls", host, port, context)
                self.local_addresses.setdefault("tls", local)

    async def close(self, *, bye_timeout: float = 2.0) -> None:
        """BYE every live dialog (all at once, waiting at most ``bye_timeout``), then stop."""
        live = [h for h in self._handles if not h.is_terminated]
        if live:
            await asyncio.wait(
                [asyncio.ensure_future(_quiet(h.bye())) for h in live], timeout=bye_timeout
            )
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.transports.close()

    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- outgoing -----------------------------------------------------------------------------

    async def invite(self, target: str | Reachable, *, sdp: bytes | None = None,
                     headers: HeaderItems = (), from_: str | None = None, to: str | None = None,
                     via_flow: Flow | None = None, proxy: str | None = None,
                     credentials: Credentials | None = None) -> OutgoingCall:  # fmt: skip
        """Send an INVITE to ``target``: a SIP URI, or a registered contact from
        ``ua.location.lookup(aor)`` — then the INVITE goes to its Contact, over the flow its
        REGISTER came in on (jigasi-protocol.md §1.1), with the AOR in To. ``via_flow`` forces
        the flow; ``proxy`` (a SIP URI, e.g. a trunk's outbound proxy) sends it there with a
        loose ``Route`` (§8.1.2, §16.12)."""
        if isinstance(target, Reachable):
            via_flow = via_flow or target.flow
            to = to or f"<{target.binding.aor}>"
            target = target.uri
        flow, routes = await self._next_hop(target, via_flow, proxy)
        request = build_request(
            "INVITE",
            target,
            from_=from_ or f"<sip:dialbridge@{self.config.domain}>",
            to=to,
            routes=routes,
            contact=self._contact_for(flow),
            cseq=next(self._cseq),
            headers=[("Allow", ALLOW), ("User-Agent", self.config.user_agent), *_items(headers)],
            body=sdp or b"",
            content_type="application/sdp" if sdp else None,
        )
        call = OutgoingCall(self, request, flow, credentials)
        self.counters["invites_out"] += 1
        self._start_invite(call, request)
        return call

    def stats(self) -> dict[str, int]:
        """Counters since start plus current gauges, for metrics."""
        out = dict(self.counters)
        out["dialogs"] = len(self.core.dialogs)
        out["transactions"] = len(self.core.transactions)
        out["incoming_calls_pending"] = len(self._incoming)
        out["bindings"] = self.location.count(time.time())
        out["connections"] = len(self.transports._connections)
        return out

    async def request(self, method: str, target: str, *, headers: HeaderItems = (),
                      body: bytes = b"", content_type: str | None = None,
                      from_: str | None = None, to: str | None = None,
                      via_flow: Flow | None = None, credentials: Credentials | None = None,
                      call_id: str | None = None, cseq: int | None = None,
                      from_tag: str | None = None, proxy: str | None = None) -> Response:  # fmt: skip
        """An out-of-dialog request (OPTIONS, MESSAGE, REGISTER to a trunk...).

        ``call_id``/``cseq``/``from_tag`` continue a sequence (REGISTER refreshes, §10.2.4)."""
        flow, routes = await self._next_hop(target, via_flow, proxy)
        request = build_request(
            method,
            target,
            routes=routes,
            from_=from_ or f"<sip:dialbridge@{self.config.domain}>",
            to=to,
            contact=self._contact_for(flow) if method == "REGISTER" else None,
            call_id=call_id,
            from_tag=from_tag,
            cseq=cseq if cseq is not None else next(self._cseq),
            headers=[("User-Agent", self.config.user_agent), *_items(headers)],
            body=body,
            content_type=content_type,
        )
        return await self._send_and_wait(request, flow, None, credentials)

    async def register(self, registrar: str, aor: str, *, credentials: Credentials | None,
                       expires: int = 600, via_flow: Flow | None = None,
                       call_id: str | None = None, cseq: int | None = None,
                       from_tag: str | None = None) -> Response:  # fmt: skip
        """One REGISTER to a trunk's registrar (no refresh loop: call again before expiry).

        On 200, requests arriving from that registrar's address are trusted like a trunk's
        (the registrar is our proxy, as Jigasi treats us)."""
        flow = via_flow or await self._flow_for(registrar)
        response = await self.request(
            "REGISTER", registrar, from_=f"<{aor}>", to=f"<{aor}>",
            headers=[("Expires", str(expires))], via_flow=flow, credentials=credentials,
            call_id=call_id, cseq=cseq, from_tag=from_tag,
        )  # fmt: skip
        if 200 <= response.status < 300:
            if expires > 0:
                self._upstreams.add(flow.remote)
            else:
                self._upstreams.discard(flow.remote)
        return response

    def keep_registered(self, registrar: str, aor: str, *, credentials: Credentials | None,
                        expires: int = 600, retry_after: float = 30.0) -> Registration:  # fmt: skip
        """Register ``aor`` with a trunk's registrar and refresh it before it expires."""
        registration = Registration(self, registrar, aor, credentials, expires, retry_after)
        registration._task = self._spawn(registration._run())
        return registration

    # -- transport callbacks (TransportUser) --------------------------------------------------

    def message_received(self, message: Request | Response, flow: Flow) -> None:
        now = self._now()
        if isinstance(message, Request):
            self.counters["requests_in"] += 1
            known = self.location.is_registered_flow(flow) or flow.remote in self._upstreams
            dropped = self.policy.admit(message, flow.remote[0], now, known_source=known)
            if dropped is not None:
                self.counters["requests_dropped"] += 1
                log.debug("dropped %s from %s: %s", message.method, flow, dropped.why)
                return
        else:
            self.counters["responses_in"] += 1
        try:
            self.core.receive(message, flow, now)
        except Exception:  # noqa: BLE001 - a bug must cost one message, not the listener
            log.exception("error handling message from %s", flow)
        finally:
            self._service()

    def flow_closed(self, flow: Flow) -> None:
        self.location.flow_closed(flow)
        self.core.transactions.flow_failed(flow, self._now())
        self._service()

    # -- the service loop ---------------------------------------------------------------------

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _service(self) -> None:
        for _ in range(1000):  # bounded: each round drains what the previous produced
            orders = self.core.messages_to_send()
            for order in orders:
                try:
                    self.transports.send(order.message, order.flow)
                except TransportError as exc:
                    log.info("send failed on %s: %s", order.flow, exc)
                    self.core.transactions.flow_failed(order.flow, self._now())
            events = []
            while (event := self.core.next_event()) is not None:
                events.append(event)
            for event in events:
                try:
                    self._dispatch(event)
                except Exception:  # noqa: BLE001 - one bad event must not stop the others
                    log.exception("error handling %s", type(event).__name__)
            if not orders and not events:
                break
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.core.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            loop = self._loop or asyncio.get_running_loop()
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.core.handle_timer(self._now())
        self._service()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, ResponseToRequest):
            self._on_response(event)
        elif isinstance(event, IncomingRequest):
            self._on_incoming_request(event)
        elif isinstance(event, InDialogRequest):
            self._on_in_dialog_request(event)
        elif isinstance(event, DialogAckReceived):
            handle = event.dialog.user_data
            if isinstance(handle, DialogHandle):
                if event.request.body:  # the answer to the offer we put in our 2xx
                    handle.remote_sdp = event.request.body
                if not handle.acked.done():
                    handle.acked.set_result(event.request)
                handle._push(AckReceived(event.request))
        elif isinstance(event, DialogTerminated):
            handle = event.dialog.user_data
            if isinstance(handle, DialogHandle):
                self._dialog_ended(handle, event.reason)
        elif isinstance(event, InviteCancelled):
            call = self._incoming.pop(event.transaction, None)
            if call is not None:
                call._settle()
                call.state = "cancelled"
                if not call.cancelled.done():
                    call.cancelled.set_result(None)

    # -- client side --------------------------------------------------------------------------

    def _start_invite(self, call: OutgoingCall, request: Request) -> None:
        transaction = self.core.send_request(request, call.flow, self._now())
        transaction.user_data = call
        call.transaction = transaction
        self._service()
        if call._cancel_requested:
            self._cancel(transaction)

    def _cancel(self, transaction: ClientTransaction) -> None:
        self.core.cancel(transaction, self._now())
        self._service()

    def _send_ack(self, transaction: ClientTransaction, response: Response, sdp: bytes) -> None:
        self.core.send_ack(transaction, response, sdp, self._now(), "application/sdp")
        self._service()

    async def _send_and_wait(self, request: Request, flow: Flow, dialog: Dialog | None,
                             credentials: Credentials | None) -> Response:  # fmt: skip
        pending = _Pending()
        self._send_pending(request, flow, dialog, pending)
        while True:
            response = await asyncio.shield(pending.final)
            if response.status in (401, 407) and credentials and not pending.challenged:
                pending.challenged = True
                retry = self._authorized_retry(request, response, credentials, dialog)
                if retry is not None:
                    request = retry
                    pending.final = asyncio.get_running_loop().create_future()
                    self._send_pending(request, flow, dialog, pending)
                    continue
            return response

    def _send_pending(self, request: Request, flow: Flow, dialog: Dialog | None,
                      pending: _Pending) -> None:  # fmt: skip
        transaction = self.core.send_request(request, flow, self._now(), dialog=dialog)
        transaction.user_data = pending
        self._service()

    def _authorized_retry(self, request: Request, challenge: Response, credentials: Credentials,
                          dialog: Dialog | None) -> Request | None:  # fmt: skip
        """§22.2: the same request again, new CSeq and branch, with credentials."""
        header = _authorization(request, challenge, credentials)
        if header is None:
            return None
        if dialog is not None:
            retry = dialog.create_request(
                request.method,
                headers=[(n, v) for n, v in request.headers.items() if n in _CARRIED_HEADERS],
                body=request.body,
                content_type=request.headers.get("Content-Type"),
            )
        else:
            retry = Request(request.method, request.uri, request.headers.copy(), request.body)
            retry.headers.remove("Via")
            retry.headers.set("CSeq", f"{request.cseq[0] + 1} {request.method}")
        retry.headers.remove("Authorization")
        retry.headers.remove("Proxy-Authorization")
        retry.headers.add(*header)
        return retry

    def _on_response(self, event: ResponseToRequest) -> None:
        owner = event.transaction.user_data
        if isinstance(owner, _Pending):
            owner.deliver(event.response, event.synthetic)
            return
        if not isinstance(owner, OutgoingCall):
            return
        call = owner
        response = event.response
        status = response.status
        if status in (401, 407) and call.credentials and not call._pending.challenged:
            retry = self._authorized_retry(call.request, response, call.credentials, None)
            if retry is not None:
                call._pending.challenged = True  # answered here: not shown, not final
                call.request = retry
                self._start_invite(call, retry)
                return
        if 200 <= status < 300 and event.dialog is not None and call.dialog is None:
            handle = DialogHandle(
                self, event.dialog, local_sdp=call.request.body or None,
                remote_sdp=response.body or None,
            )  # fmt: skip
            self._handles.add(handle)
            handle.credentials = call.credentials
            call.dialog = handle
            if not call.offerless:
                handle.acked.set_result(call.request)
            if call._cancel_requested:
                # The 2xx crossed our CANCEL (§9.1): the caller gave up, so end the dialog.
                self._spawn(self._bye_quietly(call, handle))
        call._pending.deliver(response, event.synthetic)

    async def _bye_quietly(self, call: OutgoingCall, handle: DialogHandle) -> None:
        try:
            if not handle.acked.done() and call.transaction is not None:
                # Offerless INVITE: ACK first (empty; the session is torn down at once).
                self._send_ack(call.transaction, call.final.result(), b"")
                handle.acked.set_result(call.request)
            if not handle.dialog.terminated:
                await handle.bye()
        except (SipError, RuntimeError) as exc:
            log.info("BYE after a crossed CANCEL failed: %s", exc)

    def _spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- server side --------------------------------------------------------------------------

    def _respond(self, transaction: ServerTransaction, response: Response) -> Dialog | None:
        try:
            dialog = self.core.respond(transaction, response, self._now())
        except TransactionError as exc:
            raise CallStateError(str(exc)) from exc
        if response.status >= 200:
            settled = self._incoming.pop(transaction, None)
            if settled is not None:
                settled._settle()
        if dialog is not None and 200 <= response.status < 300 and dialog.user_data is None:
            handle = DialogHandle(self, dialog, local_sdp=response.body or None, remote_sdp=None)
            self._handles.add(handle)
        self._service()
        return dialog

    def _answer(self, transaction: ServerTransaction, status: int, *,
                headers: HeaderItems = (), body: bytes = b"", content_type: str | None = None,
                reason: str | None = None) -> None:  # fmt: skip
        response = make_response(transaction.request, status, reason, to_tag=new_tag())
        self._send_answer(transaction, response, headers, body, content_type)

    def _send_answer(self, transaction: ServerTransaction, response: Response,
                     headers: HeaderItems, body: bytes, content_type: str | None) -> None:  # fmt: skip
        for name, value in _items(headers):
            response.headers.add(name, value)
        if body:
            response.body = body
            response.headers.set("Content-Type", content_type or "application/sdp")
        try:
            self.core.respond(transaction, response, self._now())
        except TransactionError as exc:
            log.warning("could not answer %s: %s", transaction, exc)

    def _auth_failed(self, flow: Flow) -> None:
        self.counters["auth_failures"] += 1
        if self.policy.auth_failed(flow.remote[0], self._now()):
            self.counters["sources_banned"] += 1
            log.warning("banning %s for %.0fs after repeated wrong credentials",
                        flow.remote[0], self.policy.ban_seconds)  # fmt: skip

    def _on_incoming_request(self, event: IncomingRequest) -> None:
        request, transaction, flow = event.request, event.transaction, event.flow
        if request.method == "REGISTER":
            if self.authenticator is None:
                self._answer(transaction, 403)  # no accounts: nobody may register
                return
            response = self.registrar.handle(request, flow, time.time())
            self.core.respond(transaction, response, self._now())
            return
        registered = self.location.is_registered_flow(flow)
        known = registered or flow.remote in self._upstreams
        decision = self.policy.classify(request, flow.remote[0], known_source=known)
        auth_user = None
        if decision.verdict is Verdict.CHALLENGE:
            assert self.authenticator is not None
            outcome = self.authenticator.authenticate(request, time.time())
            if not outcome.ok:
                if outcome.failed:
                    self._auth_failed(flow)
                if outcome.status == 403:
                    self._answer(transaction, 403)
                else:
                    self._answer(transaction, outcome.status, headers=outcome.headers)
                return
            auth_user = outcome.user
        elif decision.verdict is Verdict.FORBID:
            self.counters["requests_forbidden"] += 1
            log.info("403 to %s from %s: %s", request.method, flow, decision.why)
            self._answer(transaction, 403)
            return
        elif decision.verdict is Verdict.DROP:
            return
        if self._refuse_extensions(transaction):
            return
        trunk = decision.trunk
        if trunk is None and auth_user is not None:
            trunk = self.policy.trunk_for_digest_user(auth_user)
        if request.method == "OPTIONS":
            self._answer(
                transaction, 200,
                headers=[("Allow", ALLOW), ("Accept", "application/sdp"),
                         ("User-Agent", self.config.user_agent)],
            )  # fmt: skip
        elif request.method == "INVITE":
            call = IncomingCall(
                self, request, transaction, flow,
                trunk=trunk, auth_user=auth_user, registered=registered,
            )  # fmt: skip
            self._incoming[transaction] = call
            self.counters["invites_in"] += 1
            self._route(call)
        elif request.method in ("BYE", "INFO", "UPDATE", "ACK"):
            self._answer(transaction, 481)
        else:
            self._answer(transaction, 405, headers=[("Allow", ALLOW)])

    def _route(self, call: IncomingCall) -> None:
        if self.router is None:
            self._answer(call.transaction, 480)
            self._incoming.pop(call.transaction, None)
            return
        loop = asyncio.get_running_loop()
        self._spawn(self._run_router(call))
        # The router owns the call, but an INVITE must not stay unanswered for ever.
        call._give_up = loop.call_later(
            self.config.unanswered_timeout, self._give_up_unanswered, call
        )

    async def _run_router(self, call: IncomingCall) -> None:
        assert self.router is not None
        try:
            await self.router(call)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken router must still answer the caller
            log.exception("router failed on INVITE %s", call.request.call_id)
            if call.state in ("new", "ringing") and not call.cancelled.done():
                with contextlib.suppress(CallStateError):
                    await call.reject(500)

    def _give_up_unanswered(self, call: IncomingCall) -> None:
        if call.state in ("new", "ringing") and not call.cancelled.done():
            log.info("INVITE %s unanswered after %.0fs: 480", call.request.call_id,
                     self.config.unanswered_timeout)  # fmt: skip
            with contextlib.suppress(CallStateError):
                self._respond(call.transaction, call._response(480, None, ()))
                call.state = "rejected"

    def _on_in_dialog_request(self, event: InDialogRequest) -> None:
        request, transaction, dialog = event.request, event.transaction, event.dialog
        handle = dialog.user_data if isinstance(dialog.user_data, DialogHandle) else None
        method = request.method
        if method != "BYE" and self._refuse_extensions(transaction):
            return
        if method == "BYE":
            self._answer_in_dialog(transaction, 200)
            if handle is not None:
                handle._push(ByeReceived(request))
                self._dialog_ended(handle, "remote bye")
        elif method == "INFO":
            status, headers, body = 200, (), b""
            if handle is not None and handle.on_info is not None:
                try:
                    decided = handle.on_info(request)
                except Exception:  # noqa: BLE001 - the peer must still get its answer
                    log.exception("on_info failed")
                    decided = None
                if isinstance(decided, int):
                    status = decided
                elif isinstance(decided, tuple):
                    status, headers, body = decided
            self._answer_in_dialog(transaction, status, headers=headers, body=body,
                                   content_type=None if not body else "application/json")  # fmt: skip
            if handle is not None:
                handle._push(InfoReceived(request))
        elif method in ("INVITE", "UPDATE"):
            answer = None
            if handle is not None:
                if request.body:
                    handle.remote_sdp = request.body
                try:
                    answer = handle.on_offer(request) if handle.on_offer else handle.local_sdp
                except Exception:  # noqa: BLE001
                    log.exception("on_offer failed")
                    answer = None
                if answer is None and request.body:
                    self._answer_in_dialog(transaction, 488)
                    return
            if not request.body and method == "UPDATE":
                answer = None  # an UPDATE without an offer gets no SDP (RFC 3311 §5.2)
            self._answer_in_dialog(
                transaction, 200, body=answer or b"", content_type="application/sdp",
                headers=[("Contact", self._contact_for(dialog.flow)), ("Allow", ALLOW)],
            )  # fmt: skip
            if handle is not None:
                if answer:
                    handle.local_sdp = answer
                handle._push(OfferReceived(request, answer))
        elif method == "OPTIONS":
            self._answer_in_dialog(transaction, 200, headers=[("Allow", ALLOW)])
            if handle is not None:
                handle._push(RequestReceived(request, 200))
        else:
            self._answer_in_dialog(transaction, 405, headers=[("Allow", ALLOW)])
            if handle is not None:
                handle._push(RequestReceived(request, 405))

    def _refuse_extensions(self, transaction: ServerTransaction) -> bool:
        """§8.2.2.3: a Require we do not support gets 420 with Unsupported."""
        unsupported = [
            option
            for option in transaction.request.headers.get_all("Require")
            if option.lower() not in SUPPORTED_EXTENSIONS
        ]
        if not unsupported:
            return False
        self._answer(transaction, 420, headers=[("Unsupported", ", ".join(unsupported))])
        return True

    def _answer_in_dialog(self, transaction: ServerTransaction, status: int, *,
                          headers: HeaderItems = (), body: bytes = b"",
                          content_type: str | None = None) -> None:  # fmt: skip
        # In a dialog the To tag is already there (§12.2.2): make_response copies it.
        response = make_response(transaction.request, status)
        self._send_answer(transaction, response, headers, body, content_type)

    def _dialog_ended(self, handle: DialogHandle, reason: str) -> None:
        if handle.terminated.done():
            return
        handle.terminated.set_result(reason)
        if not handle.acked.done():
            handle.acked.cancel()
        handle._push(DialogEnded(reason))
        self._handles.discard(handle)

    # -- addressing ---------------------------------------------------------------------------

    def _contact_for(self, flow: Flow) -> str:
        host, port = flow.local
        if ":" in host:
            host = f"[{host}]"
        transport = "" if flow.transport == "udp" else f";transport={flow.transport}"
        return f"<sip:dialbridge@{host}:{port}{transport}>"

    async def _next_hop(self, target: str, via_flow: Flow | None,
                        proxy: str | None) -> tuple[Flow, list[str]]:  # fmt: skip
        """The flow a new request leaves on, and the Route set it carries."""
        if proxy is None:
            return via_flow or await self._flow_for(target), []
        uri = SipUri.parse(proxy)
        uri.params.setdefault("lr", None)
        return via_flow or await self._flow_for(proxy), [f"<{uri}>"]

    async def flow_for(self, target: str) -> Flow:
        """The flow a request to ``target`` (a SIP URI) would leave on: our UDP socket, or an
        open/new TCP/TLS connection per the URI's ``transport``/``sips``. Pass it as
        ``via_flow`` to keep several requests on one flow (a stand-in that must talk to its
        registrar over the flow it registered on)."""
        return await self._flow_for(target)

    async def _flow_for(self, target: str) -> Flow:
        uri = SipUri.parse(target)
        kind = uri.transport or ("tls" if uri.scheme == "sips" else "udp")
        if kind not in DEFAULT_PORTS:
            raise SipError(f"unsupported transport {kind!r}")
        port = uri.port or DEFAULT_PORTS[kind]
        try:
            return await self.transports.flow_to(kind, (uri.host, port))
        except (TransportError, OSError) as exc:
            raise SipError(str(exc)) from exc


# Headers copied onto an authenticated in-dialog retry.
_CARRIED_HEADERS = frozenset({"Content-Type", "Reason", "Event", "Info-Package", "User-Agent"})


async def _quiet(awaitable: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):
        await awaitable


def _items(headers: HeaderItems) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


# ---------------------------------------------------------------------------------------------
# Digest glue (dialbridge.sip.auth)
# ---------------------------------------------------------------------------------------------


def _authorization(request: Request, challenge: Response,
                   credentials: Credentials) -> tuple[str, str] | None:  # fmt: skip
    """§22.2: the Authorization/Proxy-Authorization answering a 401/407, or None if we cannot."""
    name = "Proxy-Authenticate" if challenge.status == 407 else "WWW-Authenticate"
    client = DigestClient(credentials.username, credentials.password)
    try:
        return client.answer(
            challenge.status, challenge.headers.get_all(name),
            method=request.method, uri=request.uri, body=request.body,
        )  # fmt: skip
    except AuthParseError:
        return None


__all__ = [
    "AckReceived",
    "AuthOutcome",
    "ByeReceived",
    "CallFailed",
    "CallStateError",
    "Credentials",
    "DialogEnded",
    "DialogHandle",
    "IncomingCall",
    "InfoReceived",
    "OfferReceived",
    "OutgoingCall",
    "Registration",
    "RequestReceived",
    "SipError",
    "UserAgent",
    "UserAgentConfig",
]
