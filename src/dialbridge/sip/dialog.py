"""SIP dialogs and the UA core above the transaction layer (RFC 3261 §8, §12, §13, §14, §15),
sans-IO.

Theory of operation
-------------------
* :class:`Dialog` is the state of §12: Call-ID, tags, local/remote URI, local/remote CSeq,
  remote target, route set, and the flow the dialog lives on. It builds in-dialog requests
  (§12.2.1.1) and checks incoming ones (§12.2.2). It has three states: early, confirmed,
  terminated.
* :class:`DialogLayer` owns a :class:`~dialbridge.sip.transaction.TransactionLayer` and is the
  UA core: it creates dialogs from 1xx/2xx (§12.1), matches in-dialog requests to them,
  answers 481 for unknown dialogs, 500 for CSeq going backwards and 491 for re-INVITE glare
  (§14.2); as UAS it retransmits a 2xx to INVITE until the ACK comes (§13.3.1.4) and sends BYE
  if it never does; as UAC it ACKs a 2xx (§13.2.2.4) — at once when the INVITE carried an offer,
  or when the TU gives the answer (offerless INVITE: offer in the 2xx, answer in the ACK).
* Same API shape as the transaction layer: ``receive(message, flow, now)``,
  ``handle_timer(now)``, ``get_timer()``, ``next_event()``, ``messages_to_send()``.
* Transactions in both directions are independent: an INFO we sent may be pending while the
  peer's INFO arrives; each completes on its own (jigasi-protocol.md §4.1).
* In-dialog requests go out on the flow the dialog was created on — for Jigasi that is the only
  flow it accepts (jigasi-protocol.md §1.1), and for a peer behind NAT it is the only one that
  reaches it.

This layer never invents an answer the TU should give, except the protocol's own error
answers listed above. The TU must answer every :class:`InDialogRequest` and
:class:`IncomingRequest`; :mod:`dialbridge.sip.ua` guarantees it does.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .flow import Flow, tag_of
from .message import (
    Headers,
    NameAddr,
    Request,
    Response,
    SipParseError,
    SipUri,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
)
from .timers import DEFAULT_TIMERS, TimerSettings
from .transaction import (
    AckReceived as _TxnAck,
)
from .transaction import (
    CancelReceived,
    ClientTransaction,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    StrayResponseReceived,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
    via_for,
)

log = logging.getLogger(__name__)

#: Methods we answer inside a dialog (RFC 3261 §20.5 Allow).
ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REGISTER")
#: Requests whose 2xx refreshes the remote target (§12.2, RFC 3311 §5.1).
TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


class DialogState(enum.Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(eq=False)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the From of our requests (name-addr, without tag)
    remote_uri: str  # the To of our requests
    remote_target: str  # Request-URI of our requests: the peer's Contact (§12.1)
    route_set: list[str]
    flow: Flow
    local_seq: int
    remote_seq: int | None
    is_uac: bool
    state: DialogState = DialogState.EARLY
    #: Our Contact, sent in target-refresh requests and their 2xx.
    local_contact: str = ""
    #: Why the dialog ended, once it has: "bye", "remote bye", "ack timeout", "timeout", ...
    end_reason: str | None = None
    #: Free slot for the TU (the UA keeps its Dialog facade here).
    user_data: object = None
    # Our INVITE client transaction still waiting for its final answer (glare, §14.2).
    _pending_invite: ClientTransaction | None = field(default=None, repr=False)
    _pending_reinvite_in: ServerTransaction | None = field(default=None, repr=False)
    # INVITE client transactions whose ACK context lives as long as the dialog.
    _invite_transactions: list[ClientTransaction] = field(default_factory=list, repr=False)
    # CSeq numbers of our 2xx still being retransmitted (§13.3.1.4).
    _ok_cseqs: set[int] = field(default_factory=set, repr=False)

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    @property
    def terminated(self) -> bool:
        return self.state is DialogState.TERMINATED

    # -- creation (§12.1) ---------------------------------------------------------------------

    @classmethod
    def from_uac_response(cls, request: Request, response: Response, flow: Flow) -> Dialog:
        """§12.1.2: the UAC side, from a 101-299 response carrying a To tag."""
        contacts = response.contacts
        target = str(contacts[0].uri) if contacts else request.uri
        # The route set is the Record-Route of the response, in reverse order.
        route_set = list(reversed(response.headers.get_all("Record-Route")))
        local = request.from_addr
        remote = response.to_addr
        dialog = cls(
            call_id=request.call_id,
            local_tag=local.tag or "",
            remote_tag=remote.tag or "",
            local_uri=_without_tag(local),
            remote_uri=_without_tag(remote),
            remote_target=target,
            route_set=route_set,
            flow=flow,
            local_seq=request.cseq[0],
            remote_seq=None,
            is_uac=True,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
        )
        dialog.local_contact = request.headers.get("Contact") or ""
        return dialog

    @classmethod
    def from_uas_request(
        cls, request: Request, local_tag: str, flow: Flow, local_contact: str
    ) -> Dialog:
        """§12.1.1: the UAS side, when we answer a dialog-creating request with 101-299."""
        contacts = request.contacts
        target = str(contacts[0].uri) if contacts else str(request.from_addr.uri)
        remote = request.from_addr
        local = request.to_addr
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote.tag or "",
            local_uri=_without_tag(local),
            remote_uri=_without_tag(remote),
            remote_target=target,
            route_set=list(request.headers.get_all("Record-Route")),
            flow=flow,
            local_seq=0,
            remote_seq=request.cseq[0],
            is_uac=False,
            local_contact=local_contact,
        )

    # -- requests (§12.2.1.1) ---------------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        if method not in ("ACK", "CANCEL"):
            self.local_seq += 1
        uri, routes = self._request_uri_and_routes()
        out = Headers()
        out.add("Max-Forwards", "70")
        out.add("From", f"{self.local_uri};tag={self.local_tag}")
        out.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{self.local_seq} {method}")
        for route in routes:
            out.add("Route", route)
        if method in TARGET_REFRESH and self.local_contact:
            out.add("Contact", self.local_contact)
        for name, value in headers:
            out.add(name, value)
        if body and content_type:
            out.set("Content-Type", content_type)
        return Request(method, uri, out, body)

    def create_ack(
        self, invite: Request, body: bytes = b"", content_type: str | None = None
    ) -> Request:
        """§13.2.2.4: ACK for a 2xx — same CSeq number as the INVITE, a new branch."""
        uri, routes = self._request_uri_and_routes()
        out = Headers()
        out.add("Via", via_for(self.flow, new_branch()))
        out.add("Max-Forwards", "70")
        out.add("From", f"{self.local_uri};tag={self.local_tag}")
        out.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{invite.cseq[0]} ACK")
        for route in routes:
            out.add("Route", route)
        for name in ("Authorization", "Proxy-Authorization"):
            for value in invite.headers.get_all(name):
                out.add(name, value)
        if body:
            out.add("Content-Type", content_type or "application/sdp")
        return Request("ACK", uri, out, body)

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)  # loose routing (§12.2.1.1)
        # Strict routing: the first route becomes the Request-URI, the target goes last.
        uri = SipUri(**{**first.uri.__dict__, "params": dict(first.uri.params)})
        return str(uri), self.route_set[1:] + [f"<{self.remote_target}>"]

    # -- incoming (§12.2.2) -------------------------------------------------------------------

    def check_remote_seq(self, request: Request) -> bool:
        """§12.2.2: a CSeq lower than the last one is out of order (answer 500)."""
        number = request.cseq[0]
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and number <= self.remote_seq:
            return False
        self.remote_seq = number
        return True

    def refresh_target(self, message: Request | Response) -> None:
        """§12.2: a target-refresh request or its 2xx replaces the remote target."""
        try:
            contacts = message.contacts
        except SipParseError:
            return
        if contacts:
            self.remote_target = str(contacts[0].uri)


def _without_tag(addr: NameAddr) -> str:
    params = {k: v for k, v in addr.params.items() if k != "tag"}
    return str(NameAddr(addr.uri, addr.display_name, params))


# ---------------------------------------------------------------------------------------------
# Events handed to the TU
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class IncomingRequest:
    """A request outside any dialog (INVITE, REGISTER, OPTIONS, ...)."""

    request: Request
    transaction: ServerTransaction
    flow: Flow


@dataclass(frozen=True, eq=False)
class InDialogRequest:
    """A request inside ``dialog`` (INFO, BYE, re-INVITE, UPDATE, OPTIONS, ...). Answer it."""

    dialog: Dialog
    request: Request
    transaction: ServerTransaction


@dataclass(frozen=True, eq=False)
class ResponseToRequest:
    """A response to a request we sent. ``synthetic`` marks the 408 of a timeout and the 503 of
    a transport failure (§8.1.3.1). ``dialog`` is set for responses that created, confirmed or
    belong to a dialog."""

    response: Response
    transaction: ClientTransaction
    dialog: Dialog | None
    synthetic: bool = False


@dataclass(frozen=True, eq=False)
class DialogAckReceived:
    """The peer ACKed our 2xx; ``request.body`` is the SDP answer of an offerless INVITE."""

    dialog: Dialog
    request: Request


@dataclass(frozen=True, eq=False)
class DialogTerminated:
    dialog: Dialog
    reason: str


@dataclass(frozen=True, eq=False)
class InviteCancelled:
    """The peer cancelled its INVITE before we answered; 487 has been sent."""

    transaction: ServerTransaction
    cancel: Request


DialogEvent = (
    IncomingRequest
    | InDialogRequest
    | ResponseToRequest
    | DialogAckReceived
    | DialogTerminated
    | InviteCancelled
)


@dataclass(eq=False)
class _OkRetransmission:
    """§13.3.1.4: the UAS core resends its 2xx at T1, 2*T1, ... up to T2 until the ACK comes,
    and gives up after 64*T1."""

    dialog: Dialog
    response: Response
    flow: Flow
    transaction: ServerTransaction
    next_at: float
    interval: float
    give_up_at: float


@dataclass(eq=False)
class _InviteContext:
    """What a UAC needs to remember about an INVITE it sent."""

    request: Request
    flow: Flow
    dialogs: dict[str, Dialog] = field(default_factory=dict)  # by remote tag
    acks: dict[str, Request] = field(default_factory=dict)  # ACK sent, by remote tag
    confirmed_tag: str | None = None
    in_dialog: Dialog | None = None  # set for re-INVITEs


# ---------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------


class DialogLayer:
    def __init__(self, settings: TimerSettings = DEFAULT_TIMERS) -> None:
        self.settings = settings
        self.transactions = TransactionLayer(settings)
        self.dialogs: dict[tuple[str, str, str], Dialog] = {}
        self._events: deque[DialogEvent] = deque()
        self._invites: dict[ClientTransaction, _InviteContext] = {}
        self._requests: dict[ClientTransaction, Dialog] = {}
        self._ok_retransmissions: dict[tuple[tuple[str, str, str], int], _OkRetransmission] = {}
        # (deadline, sequence, key): lazily pruned, so each timer costs O(log n) under load.
        self._ok_heap: list[tuple[float, int, tuple[tuple[str, str, str], int]]] = []
        self._ok_sequence = itertools.count()

    # -- inputs -------------------------------------------------------------------------------

    def receive(self, message: Request | Response, flow: Flow, now: float) -> None:
        self.transactions.receive(message, flow, now)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        self.transactions.handle_timer(now)
        heap = self._ok_heap
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            retransmission = self._ok_retransmissions.get(key)
            if retransmission is None or retransmission.next_at != deadline:
                continue  # ACKed, ended or rescheduled since
            if now >= retransmission.give_up_at:
                del self._ok_retransmissions[key]
                self._ack_never_came(retransmission.dialog, now)
                continue
            self.transactions.send_stateless(retransmission.response, retransmission.flow)
            retransmission.interval = min(2 * retransmission.interval, self.settings.t2)
            self._schedule_ok(key, retransmission, now + retransmission.interval)
        self._drain(now)

    def _schedule_ok(self, key: tuple, retransmission: _OkRetransmission, at: float) -> None:
        retransmission.next_at = min(at, retransmission.give_up_at)
        heapq.heappush(self._ok_heap, (retransmission.next_at, next(self._ok_sequence), key))

    def send_request(
        self, request: Request, flow: Flow, now: float, *, dialog: Dialog | None = None
    ) -> ClientTransaction:
        """Send ``request`` (out of dialog, or built by ``dialog.create_request``)."""
        if dialog is not None and request.method == "INVITE" and dialog._pending_invite:
            raise RuntimeError("a re-INVITE is already pending in this dialog (§14.1)")
        transaction = self.transactions.send_request(request, flow, now)
        if request.method == "INVITE":
            self._invites[transaction] = _InviteContext(request, flow, in_dialog=dialog)
            if dialog is not None:
                dialog._pending_invite = transaction
                dialog._invite_transactions.append(transaction)
        elif dialog is not None:
            self._requests[transaction] = dialog
            if request.method == "BYE":
                self._end(dialog, "bye")
        self._drain(now)
        return transaction

    def respond(
        self, transaction: ServerTransaction, response: Response, now: float
    ) -> Dialog | None:
        """Answer a server transaction; for INVITE 101-299 with a To tag this creates (or
        confirms) the dialog, and a 2xx is retransmitted until ACKed. Returns the dialog."""
        request = transaction.request
        dialog = None
        if request.method == "INVITE":
            dialog = self._uas_invite_response(transaction, response, now)
        transaction.respond(response, now)
        self._drain(now)
        return dialog

    def cancel(self, transaction: ClientTransaction, now: float) -> None:
        self.transactions.cancel(transaction, now)
        self._drain(now)

    def send_ack(
        self,
        transaction: ClientTransaction,
        response: Response,
        body: bytes,
        now: float,
        content_type: str | None = None,
    ) -> None:
        """ACK a 2xx whose INVITE had no offer: ``body`` is our answer (§13.2.2.4)."""
        context = self._invites.get(transaction)
        tag = tag_of(response.headers.get("To")) or ""
        if context is None or tag not in context.dialogs:
            raise RuntimeError("no 2xx-confirmed dialog for this INVITE")
        self._send_ack(context, context.dialogs[tag], body, content_type)

    def terminate(self, dialog: Dialog, reason: str) -> None:
        """Forget a dialog without signalling (the TU already sent or got BYE)."""
        self._end(dialog, reason)

    # -- outputs ------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        heap = self._ok_heap
        while heap:
            deadline, _, key = heap[0]
            retransmission = self._ok_retransmissions.get(key)
            if retransmission is not None and retransmission.next_at == deadline:
                break
            heapq.heappop(heap)
        timer = self.transactions.get_timer()
        if heap and (timer is None or heap[0][0] < timer):
            return heap[0][0]
        return timer

    def next_event(self) -> DialogEvent | None:
        return self._events.popleft() if self._events else None

    def messages_to_send(self):
        return self.transactions.messages_to_send()

    # -- internals ----------------------------------------------------------------------------

    def _drain(self, now: float) -> None:
        while (event := self.transactions.next_event()) is not None:
            try:
                self._on_transaction_event(event, now)
            except SipParseError as exc:
                # A header we only look at here (Contact, Record-Route, ...) is malformed: a
                # remote error. Answer 400 if the request is still unanswered; carry on.
                log.info("malformed %s: %s", type(event).__name__, exc)
                last = (
                    event.transaction.last_response if isinstance(event, RequestReceived) else None
                )
                if isinstance(event, RequestReceived) and (last is None or last.status < 200):
                    self._reject(event.transaction, 400, now, reason=exc.reason)

    def _on_transaction_event(self, event: object, now: float) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event, now)
        elif isinstance(event, ResponseReceived):
            self._on_response(event.response, event.transaction, now)
        elif isinstance(event, _TxnAck):
            self._on_ack(event.request)
        elif isinstance(event, StrayResponseReceived):
            self._on_stray_response(event.response)
        elif isinstance(event, TransactionTimedOut | TransportFailed):
            self._on_failure(event, now)
        elif isinstance(event, CancelReceived):
            request = event.transaction.request
            early = self.dialogs.get(
                (
                    request.call_id,
                    event.transaction.to_tag or "",
                    tag_of(request.headers.get("From")) or "",
                )
            )
            if early is not None:
                self._end(early, "cancelled")
            self._emit(InviteCancelled(event.transaction, event.cancel))

    def _on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        to_tag = tag_of(request.headers.get("To"))
        if to_tag is None:
            self._emit(IncomingRequest(request, event.transaction, event.flow))
            return
        dialog = self.dialogs.get(
            (request.call_id, to_tag, tag_of(request.headers.get("From")) or "")
        )
        if dialog is None or dialog.terminated:
            # §12.2.2: a request for a dialog we do not know.
            self._reject(event.transaction, 481, now)
            return
        if not dialog.check_remote_seq(request):
            self._reject(event.transaction, 500, now, reason="CSeq Out of Order")
            return
        if request.method == "INVITE":
            if dialog._pending_invite is not None:
                self._reject(event.transaction, 491, now)  # §14.2 glare
                return
            if dialog._pending_reinvite_in is not None:
                self._reject(event.transaction, 500, now, retry_after=True)  # §14.2
                return
            dialog._pending_reinvite_in = event.transaction
        if request.method in TARGET_REFRESH:
            dialog.refresh_target(request)
        self._emit(InDialogRequest(dialog, request, event.transaction))
        if request.method == "BYE":
            self._end(dialog, "remote bye")

    def _reject(
        self,
        transaction: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        retry_after: bool = False,
    ) -> None:
        headers = [("Retry-After", "1")] if retry_after else []
        response = make_response(transaction.request, status, reason, headers=headers)
        transaction.respond(response, now)

    def _uas_invite_response(
        self, transaction: ServerTransaction, response: Response, now: float
    ) -> Dialog | None:
        request = transaction.request
        status = response.status
        dialog = None
        if tag_of(request.headers.get("To")) is not None:  # re-INVITE
            dialog = self.dialogs.get(
                (
                    request.call_id,
                    tag_of(request.headers.get("To")) or "",
                    tag_of(request.headers.get("From")) or "",
                )
            )
            if dialog is not None and status >= 200:
                dialog._pending_reinvite_in = None
        else:
            tag = tag_of(response.headers.get("To"))
            if 100 < status < 300 and tag:
                key = (request.call_id, tag, tag_of(request.headers.get("From")) or "")
                dialog = self.dialogs.get(key)
                if dialog is None:
                    contact = response.headers.get("Contact") or ""
                    dialog = Dialog.from_uas_request(request, tag, transaction.flow, contact)
                    self.dialogs[key] = dialog
                _copy_record_route(request, response)
                if status >= 200:
                    dialog.state = DialogState.CONFIRMED
            elif status >= 300 and tag:
                early = self.dialogs.get(
                    (request.call_id, tag, tag_of(request.headers.get("From")) or "")
                )
                if early is not None:
                    self._end(early, f"rejected {status}")
        if dialog is not None and 200 <= status < 300:
            retransmission = _OkRetransmission(
                dialog,
                response,
                transaction.response_flow,
                transaction,
                next_at=now + self.settings.t1,
                interval=self.settings.t1,
                give_up_at=now + 64 * self.settings.t1,
            )
            key = (dialog.id, request.cseq[0])
            self._ok_retransmissions[key] = retransmission
            dialog._ok_cseqs.add(request.cseq[0])
            self._schedule_ok(key, retransmission, now + self.settings.t1)
        return dialog

    def _on_ack(self, ack: Request) -> None:
        key = (
            ack.call_id,
            tag_of(ack.headers.get("To")) or "",
            tag_of(ack.headers.get("From")) or "",
        )
        dialog = self.dialogs.get(key)
        if dialog is None:
            log.debug("ACK for no dialog dropped: %s", key)
            return
        retransmission = self._ok_retransmissions.pop((key, ack.cseq[0]), None)
        if retransmission is None:
            return  # a retransmitted ACK
        dialog._ok_cseqs.discard(ack.cseq[0])
        self._emit(DialogAckReceived(dialog, ack))

    def _ack_never_came(self, dialog: Dialog, now: float) -> None:
        # §13.3.1.4: "the UAS core SHOULD terminate the dialog by sending a BYE".
        if dialog.terminated:
            return
        log.info("no ACK for our 2xx in dialog %s: sending BYE", dialog.id)
        self._hang_up(dialog, "ack timeout", now)

    def _on_response(
        self,
        response: Response,
        transaction: ClientTransaction,
        now: float,
        synthetic: bool = False,
    ) -> None:
        context = self._invites.get(transaction)
        if context is None:
            dialog = self._requests.get(transaction)
            if response.status >= 200:
                self._requests.pop(transaction, None)
                if dialog is not None and not dialog.terminated:
                    self._end_after_failure(dialog, response.status, transaction.method, now)
            self._emit(ResponseToRequest(response, transaction, dialog, synthetic))
            return
        if context.in_dialog is not None:
            self._on_reinvite_response(context, response, transaction, synthetic, now)
            return
        dialog = None
        tag = tag_of(response.headers.get("To")) if not synthetic else None
        status = response.status
        if tag and 100 < status < 300:
            dialog = context.dialogs.get(tag)
            if dialog is None:
                dialog = Dialog.from_uac_response(context.request, response, context.flow)
                dialog._invite_transactions.append(transaction)
                context.dialogs[tag] = dialog
                self.dialogs[dialog.id] = dialog
            elif status >= 200:
                # §12.1.2 / §13.2.2.4: the 2xx fixes the route set and target.
                dialog.route_set = list(reversed(response.headers.get_all("Record-Route")))
                dialog.refresh_target(response)
            if status >= 200:
                if tag in context.acks:
                    # A retransmitted 2xx: ACK again, do not bother the TU (§13.2.2.4).
                    self.transactions.send_stateless(context.acks[tag], dialog.flow)
                    return
                dialog.state = DialogState.CONFIRMED
                if context.confirmed_tag is None:
                    context.confirmed_tag = tag
                elif context.confirmed_tag != tag:
                    # A second 2xx from a forked leg: ACK it and BYE it (§13.2.2.4).
                    self._send_ack(context, dialog, b"", None)
                    self._hang_up(dialog, "forked 2xx", now)
                    return
                if context.request.body:
                    self._send_ack(context, dialog, b"", None)
        elif status >= 300:
            for early in context.dialogs.values():
                if early.state is DialogState.EARLY:
                    self._end(early, f"rejected {status}")
            self._invites.pop(transaction, None)
        self._emit(ResponseToRequest(response, transaction, dialog, synthetic))

    def _on_reinvite_response(
        self,
        context: _InviteContext,
        response: Response,
        transaction: ClientTransaction,
        synthetic: bool,
        now: float,
    ) -> None:
        dialog = context.in_dialog
        assert dialog is not None
        if response.status >= 200:
            dialog._pending_invite = None
        if 200 <= response.status < 300 and not synthetic:
            tag = tag_of(response.headers.get("To")) or ""
            if tag in context.acks:
                self.transactions.send_stateless(context.acks[tag], dialog.flow)
                return
            dialog.refresh_target(response)
            context.dialogs[tag] = dialog
            if context.request.body:
                self._send_ack(context, dialog, b"", None)
        elif response.status >= 300:
            self._invites.pop(transaction, None)
            if not dialog.terminated:
                self._end_after_failure(dialog, response.status, "re-INVITE", now)
        self._emit(ResponseToRequest(response, transaction, dialog, synthetic))

    def _send_ack(
        self, context: _InviteContext, dialog: Dialog, body: bytes, content_type: str | None
    ) -> None:
        ack = dialog.create_ack(context.request, body, content_type)
        context.acks[dialog.remote_tag] = ack
        self.transactions.send_stateless(ack, dialog.flow)

    def _hang_up(self, dialog: Dialog, reason: str, now: float) -> None:
        """Send BYE and end the dialog at once (the BYE's answer changes nothing)."""
        bye = dialog.create_request("BYE")
        transaction = self.transactions.send_request(bye, dialog.flow, now)
        self._requests[transaction] = dialog
        self._end(dialog, reason)

    def _end_after_failure(self, dialog: Dialog, status: int, method: str, now: float) -> None:
        # §12.2.1.2: a 481 means the peer has no such dialog: just forget it. A 408 (no answer
        # at all) terminates it too; we say BYE in case the peer is still there.
        if method == "BYE":
            return
        if status == 481:
            self._end(dialog, f"481 to {method}")
        elif status == 408:
            self._hang_up(dialog, f"408 to {method}", now)

    def _on_stray_response(self, response: Response) -> None:
        # A 2xx retransmission after Timer M: ACK it again if we know the dialog.
        if response.cseq[1] != "INVITE" or not 200 <= response.status < 300:
            return
        for context in self._invites.values():
            if context.request.call_id == response.call_id:
                ack = context.acks.get(tag_of(response.headers.get("To")) or "")
                if ack is not None and context.request.cseq[0] == response.cseq[0]:
                    self.transactions.send_stateless(ack, context.flow)
                return

    def _on_failure(self, event: TransactionTimedOut | TransportFailed, now: float) -> None:
        transaction = event.transaction
        if isinstance(transaction, ServerTransaction):
            log.info("server transaction %r failed: %s", transaction, type(event).__name__)
            return
        status = 408 if isinstance(event, TransactionTimedOut) else 503
        response = make_response(transaction.request, status)
        self._on_response(response, transaction, now, synthetic=True)
        self._invites.pop(transaction, None)

    def _end(self, dialog: Dialog, reason: str) -> None:
        if dialog.terminated:
            return
        dialog.state = DialogState.TERMINATED
        dialog.end_reason = reason
        for cseq in dialog._ok_cseqs:
            self._ok_retransmissions.pop((dialog.id, cseq), None)
        dialog._ok_cseqs.clear()
        self.dialogs.pop(dialog.id, None)
        for transaction in dialog._invite_transactions:
            self._invites.pop(transaction, None)
        dialog._invite_transactions.clear()
        self._emit(DialogTerminated(dialog, reason))

    def _emit(self, event: DialogEvent) -> None:
        self._events.append(event)


def _copy_record_route(request: Request, response: Response) -> None:
    """§12.1.1: a dialog-creating response copies the request's Record-Route."""
    routes = request.headers.get_all("Record-Route")
    if routes and "Record-Route" not in response.headers:
        for route in routes:
            response.headers.add("Record-Route", route)


# ---------------------------------------------------------------------------------------------
# Out-of-dialog requests (§8.1.1)
# ---------------------------------------------------------------------------------------------


def build_request(
    method: str,
    uri: str,
    *,
    from_: str,
    to: str | None = None,
    contact: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = None,
    routes: Iterable[str] = (),
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """§8.1.1: a request outside any dialog. ``from_``/``to`` are name-addr or URI text."""
    out = Headers()
    out.add("Max-Forwards", "70")
    out.add("From", f"{_as_name_addr(from_)};tag={from_tag or new_tag()}")
    out.add("To", _as_name_addr(to or uri))
    out.add("Call-ID", call_id or new_call_id())
    out.add("CSeq", f"{cseq} {method}")
    for route in routes:
        out.add("Route", route)
    if contact:
        out.add("Contact", contact)
    for name, value in headers:
        out.add(name, value)
    if body:
        out.set("Content-Type", content_type or "application/sdp")
    return Request(method, uri, out, body)


def _as_name_addr(text: str) -> str:
    return text if "<" in text else f"<{text}>"
