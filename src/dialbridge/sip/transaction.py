"""SIP transactions (RFC 3261 §17, amended by RFC 6026), sans-IO.

Theory of operation
-------------------
* Four state machines, one per figure: INVITE client (Figure 5), non-INVITE client (Figure 6),
  INVITE server (Figure 7) and non-INVITE server (Figure 8), with the RFC 6026 "Accepted" state
  for INVITEs answered 2xx. Each is a **transition table** ``(state, stimulus) -> (next state,
  actions)``; a stimulus not in the table is absorbed, as the figures do. Read the tables at the
  bottom of this file side by side with the RFC figures.
* :class:`TransactionLayer` owns every transaction: it matches incoming messages to them
  (§17.1.3, §17.2.3), creates server transactions for new requests, detects merged requests
  (§8.2.2.2) and answers CANCEL (§9.2). It never does I/O: the caller feeds it messages with
  ``receive(message, flow, now)`` and timers with ``handle_timer(now)``, and collects
  :class:`SendMessage` orders from ``messages_to_send()`` and events from ``next_event()``.
  ``get_timer()`` says when to call ``handle_timer`` next. Time is in seconds (any float clock).
* This file knows nothing of dialogs. The 2xx answer to an INVITE and its ACK live above it
  (§13.3.1.4, §13.2.2.4): the layer passes such ACKs up as :class:`AckReceived` and sends what
  the dialog layer asks with ``send_stateless``.

Errors: misuse by our own code (answering twice with a final response, answering a CANCEL
ourselves) raises :class:`TransactionError`. Garbage from the network never raises: a request
we cannot match is answered 400 when possible, else dropped and logged.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .flow import Flow, response_flow, stamp_received, tag_of
from .message import (
    MAGIC_COOKIE,
    Headers,
    Request,
    Response,
    SipParseError,
    Via,
    make_response,
    new_branch,
    new_tag,
)
from .timers import DEFAULT_TIMERS, TimerSettings

log = logging.getLogger(__name__)


class TransactionError(RuntimeError):
    """A local error: our own code used a transaction in a way RFC 3261 forbids (a bug)."""


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1 / §7.2
    TERMINATED = "Terminated"


# ---------------------------------------------------------------------------------------------
# Events handed to the transaction user, and orders to send
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SendMessage:
    message: Request | Response
    flow: Flow


@dataclass(frozen=True, eq=False)
class RequestReceived:
    """A new request (not a retransmission) for the TU; answer it through ``transaction``."""

    request: Request
    transaction: ServerTransaction
    flow: Flow


@dataclass(frozen=True, eq=False)
class AckReceived:
    """An ACK for a 2xx (its own transaction, §17.1.1.3): the dialog layer matches it."""

    request: Request
    flow: Flow


@dataclass(frozen=True, eq=False)
class ResponseReceived:
    response: Response
    transaction: ClientTransaction


@dataclass(frozen=True, eq=False)
class StrayResponseReceived:
    """A response that matches no client transaction, e.g. a late 2xx retransmission."""

    response: Response
    flow: Flow


@dataclass(frozen=True, eq=False)
class TransactionTimedOut:
    """Timer B or F (client: no final response), or Timer H (server: no ACK for our final)."""

    transaction: ClientTransaction | ServerTransaction


@dataclass(frozen=True, eq=False)
class TransportFailed:
    transaction: ClientTransaction | ServerTransaction


@dataclass(frozen=True, eq=False)
class CancelReceived:
    """The peer cancelled a pending INVITE (§9.2). The layer has already answered the CANCEL
    200 and the INVITE 487; ``transaction`` is the INVITE server transaction."""

    transaction: ServerTransaction
    cancel: Request


TransactionEvent = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | StrayResponseReceived
    | TransactionTimedOut
    | TransportFailed
    | CancelReceived
)


# ---------------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------------

Action = Callable[["_Transaction", float, "Request | Response | None"], None]
Table = dict[tuple[State, str], tuple[State, tuple[Action, ...]]]


class _Transaction:
    """What the four machines share: a state, a table, named timers and a back-link for output."""

    _table: Table

    def __init__(self, layer: TransactionLayer, request: Request, flow: Flow) -> None:
        self._layer = layer
        self.request = request
        self.flow = flow
        self.method = request.method
        self.timers = layer.settings
        self.reliable = flow.reliable
        self._deadlines: dict[str, float] = {}
        self._interval = self.timers.t1
        self.last_response: Response | None = None
        #: Free slot for the transaction user (the UA keeps its future here).
        self.user_data: object = None

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def _stimulate(
        self, stimulus: str, now: float, message: Request | Response | None = None
    ) -> bool:
        entry = self._table.get((self.state, stimulus))
        if entry is None:
            return False  # absorbed, as the figures do with anything not drawn
        self.state, actions = entry
        for action in actions:
            action(self, now, message)
        if self.state is State.TERMINATED:
            self._deadlines.clear()
            self._layer._forget(self)
        return True

    def _start(self, name: str, now: float, duration: float) -> None:
        deadline = now + duration
        self._deadlines[name] = deadline
        self._layer._schedule(deadline, self, name)

    def _stop(self, name: str) -> None:
        self._deadlines.pop(name, None)

    def _fire_due(self, name: str, deadline: float, now: float) -> None:
        if self._deadlines.get(name) != deadline:
            return  # stopped or restarted since it was scheduled
        del self._deadlines[name]
        self._stimulate("timer_" + name, now)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.method} {self.state.value}>"


class ClientTransaction(_Transaction):
    """Figures 5 and 6. Created by :meth:`TransactionLayer.send_request`."""

    def __init__(self, layer: TransactionLayer, request: Request, flow: Flow, now: float) -> None:
        super().__init__(layer, request, flow)
        self.branch = request.vias[0].branch or ""
        self.invite = request.method == "INVITE"
        self._table = INVITE_CLIENT if self.invite else NON_INVITE_CLIENT
        self.state = State.CALLING if self.invite else State.TRYING
        self.cancel_pending = False
        self.cancelled = False
        layer._send(request, flow)
        # §17.1.1.2 / §17.1.2.2: retransmission timers only over unreliable transports.
        if self.invite:
            if not self.reliable:
                self._start("A", now, self.timers.timer_a())
            self._start("B", now, self.timers.timer_b())
        else:
            if not self.reliable:
                self._start("E", now, self.timers.timer_e())
            self._start("F", now, self.timers.timer_f())

    def receive_response(self, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            stimulus = "1xx"
        elif self.invite:
            stimulus = "2xx" if status < 300 else "300-699"
        else:
            stimulus = "final"
        self._stimulate(stimulus, now, response)

    # -- actions ----------------------------------------------------------------------------

    def _pass_up(self, now: float, response: Response | None) -> None:
        assert isinstance(response, Response)
        self.last_response = response
        self._layer._emit(ResponseReceived(response, self))

    def _stop_retransmissions(self, now: float, message: object) -> None:
        self._stop("A")
        self._stop("B")  # §17.1.1.2: no timeout once a provisional response has arrived

    def _retransmit_a(self, now: float, message: object) -> None:
        self._layer._send(self.request, self.flow)
        self._interval *= 2  # §17.1.1.2: Timer A doubles each time, without a cap
        self._start("A", now, self._interval)

    def _retransmit_e(self, now: float, message: object) -> None:
        self._layer._send(self.request, self.flow)
        # §17.1.2.2: doubling up to T2 while Trying; every T2 once Proceeding.
        if self.state is State.PROCEEDING:
            self._interval = self.timers.t2
        else:
            self._interval = min(2 * self._interval, self.timers.t2)
        self._start("E", now, self._interval)

    def _send_ack(self, now: float, response: Response | None) -> None:
        assert isinstance(response, Response)
        self._layer._send(ack_for_non_2xx(self.request, response), self.flow)

    def _start_d(self, now: float, message: object) -> None:
        self._stop("A")
        self._stop("B")
        self._start("D", now, self.timers.timer_d(self.reliable))

    def _start_k(self, now: float, message: object) -> None:
        self._stop("E")
        self._stop("F")
        self._start("K", now, self.timers.timer_k(self.reliable))

    def _start_m(self, now: float, message: object) -> None:
        self._stop("A")
        self._stop("B")
        self._stop("cancel")
        self._start("M", now, self.timers.timer_m())

    def _send_pending_cancel(self, now: float, message: object) -> None:
        if self.cancel_pending:
            self.cancel_pending = False
            self._layer._send_cancel(self, now)

    def _report_timeout(self, now: float, message: object) -> None:
        self._layer._emit(TransactionTimedOut(self))

    def _report_transport_error(self, now: float, message: object) -> None:
        self._layer._emit(TransportFailed(self))


class ServerTransaction(_Transaction):
    """Figures 7 and 8. Created by the layer for each new request."""

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        flow: Flow,
        key: tuple,
        now: float,
        top_via: Via | None = None,
    ) -> None:
        super().__init__(layer, request, flow)
        self.key = key
        self.invite = request.method == "INVITE"
        self._table = INVITE_SERVER if self.invite else NON_INVITE_SERVER
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.response_flow = response_flow(flow, top_via or request.vias[0])
        #: The To tag of our responses, once the TU chose one (a 487 after CANCEL reuses it).
        self.to_tag: str | None = None
        if self.invite:
            # §17.2.1: 100 Trying unless the TU answers within 200 ms.
            if self.timers.trying_delay <= 0:
                self._send_trying(now, None)
            else:
                self._start("trying", now, self.timers.trying_delay)

    def respond(self, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            stimulus = "tu_1xx"
        elif self.invite:
            stimulus = "tu_2xx" if status < 300 else "tu_300-699"
        else:
            stimulus = "tu_final"
        if not self._stimulate(stimulus, now, response):
            raise TransactionError(
                f"cannot send {status} to {self.method} in state {self.state.value}"
            )

    # -- actions ----------------------------------------------------------------------------

    def _send_response(self, now: float, response: Response | None) -> None:
        assert isinstance(response, Response)
        self._stop("trying")
        self.last_response = response
        tag = tag_of(response.headers.get("To"))
        if tag:
            self.to_tag = tag
        self._layer._send(response, self.response_flow)

    def _resend_last_response(self, now: float, message: object) -> None:
        if self.last_response is not None:
            self._layer._send(self.last_response, self.response_flow)

    def _send_trying(self, now: float, message: object) -> None:
        if self.last_response is None:
            self.last_response = make_response(self.request, 100)
            self._layer._send(self.last_response, self.response_flow)

    def _start_g_h(self, now: float, message: object) -> None:
        if not self.reliable:
            self._start("G", now, self.timers.timer_g())
        self._start("H", now, self.timers.timer_h())

    def _retransmit_g(self, now: float, message: object) -> None:
        self._resend_last_response(now, message)
        self._interval = min(2 * self._interval, self.timers.t2)  # §17.2.1
        self._start("G", now, self._interval)

    def _start_i(self, now: float, message: object) -> None:
        self._stop("G")
        self._stop("H")
        self._start("I", now, self.timers.timer_i(self.reliable))

    def _start_j(self, now: float, message: object) -> None:
        self._start("J", now, self.timers.timer_j(self.reliable))

    def _start_l(self, now: float, message: object) -> None:
        self._start("L", now, self.timers.timer_l())

    def _pass_ack_up(self, now: float, ack: Request | Response | None) -> None:
        assert isinstance(ack, Request)
        self._layer._emit(AckReceived(ack, self.flow))

    def _report_timeout(self, now: float, message: object) -> None:
        self._layer._emit(TransactionTimedOut(self))

    def _report_transport_error(self, now: float, message: object) -> None:
        self._layer._emit(TransportFailed(self))


# ---------------------------------------------------------------------------------------------
# The tables. Stimuli: responses by class ("1xx", "2xx", "300-699", "final"), TU responses
# ("tu_..."), "request" (a retransmission), "ack", "timer_X", "transport_error".
# ---------------------------------------------------------------------------------------------

C, S = ClientTransaction, ServerTransaction
CALLING, TRYING, PROCEEDING = State.CALLING, State.TRYING, State.PROCEEDING
COMPLETED, CONFIRMED, ACCEPTED, TERMINATED = (
    State.COMPLETED,
    State.CONFIRMED,
    State.ACCEPTED,
    State.TERMINATED,
)

# RFC 3261 Figure 5, with RFC 6026 Figure 5 (Accepted replaces "2xx → Terminated").
INVITE_CLIENT: Table = {
    (CALLING, "timer_A"): (CALLING, (C._retransmit_a,)),
    (CALLING, "timer_B"): (TERMINATED, (C._report_timeout,)),
    (CALLING, "1xx"): (PROCEEDING, (C._stop_retransmissions, C._pass_up, C._send_pending_cancel)),
    (CALLING, "2xx"): (ACCEPTED, (C._start_m, C._pass_up)),
    (CALLING, "300-699"): (COMPLETED, (C._send_ack, C._start_d, C._pass_up)),
    (CALLING, "transport_error"): (TERMINATED, (C._report_transport_error,)),
    (PROCEEDING, "1xx"): (PROCEEDING, (C._pass_up,)),
    (PROCEEDING, "2xx"): (ACCEPTED, (C._start_m, C._pass_up)),
    (PROCEEDING, "300-699"): (COMPLETED, (C._send_ack, C._start_d, C._pass_up)),
    (PROCEEDING, "timer_cancel"): (TERMINATED, (C._report_timeout,)),  # §9.1, 64*T1 after CANCEL
    (PROCEEDING, "transport_error"): (TERMINATED, (C._report_transport_error,)),
    (COMPLETED, "300-699"): (COMPLETED, (C._send_ack,)),
    (COMPLETED, "timer_D"): (TERMINATED, ()),
    (COMPLETED, "transport_error"): (TERMINATED, (C._report_transport_error,)),
    (ACCEPTED, "2xx"): (ACCEPTED, (C._pass_up,)),
    (ACCEPTED, "timer_M"): (TERMINATED, ()),
}

# RFC 3261 Figure 6.
NON_INVITE_CLIENT: Table = {
    (TRYING, "timer_E"): (TRYING, (C._retransmit_e,)),
    (TRYING, "timer_F"): (TERMINATED, (C._report_timeout,)),
    (TRYING, "1xx"): (PROCEEDING, (C._pass_up,)),
    (TRYING, "final"): (COMPLETED, (C._start_k, C._pass_up)),
    (TRYING, "transport_error"): (TERMINATED, (C._report_transport_error,)),
    (PROCEEDING, "timer_E"): (PROCEEDING, (C._retransmit_e,)),
    (PROCEEDING, "timer_F"): (TERMINATED, (C._report_timeout,)),
    (PROCEEDING, "1xx"): (PROCEEDING, (C._pass_up,)),
    (PROCEEDING, "final"): (COMPLETED, (C._start_k, C._pass_up)),
    (PROCEEDING, "transport_error"): (TERMINATED, (C._report_transport_error,)),
    (COMPLETED, "timer_K"): (TERMINATED, ()),
}

# RFC 3261 Figure 7, with RFC 6026 Figure 7 (Accepted).
INVITE_SERVER: Table = {
    (PROCEEDING, "timer_trying"): (PROCEEDING, (S._send_trying,)),
    (PROCEEDING, "request"): (PROCEEDING, (S._resend_last_response,)),
    (PROCEEDING, "tu_1xx"): (PROCEEDING, (S._send_response,)),
    (PROCEEDING, "tu_2xx"): (ACCEPTED, (S._send_response, S._start_l)),
    (PROCEEDING, "tu_300-699"): (COMPLETED, (S._send_response, S._start_g_h)),
    (PROCEEDING, "transport_error"): (TERMINATED, (S._report_transport_error,)),
    (COMPLETED, "request"): (COMPLETED, (S._resend_last_response,)),
    (COMPLETED, "timer_G"): (COMPLETED, (S._retransmit_g,)),
    (COMPLETED, "timer_H"): (TERMINATED, (S._report_timeout,)),
    (COMPLETED, "ack"): (CONFIRMED, (S._start_i,)),
    (COMPLETED, "transport_error"): (TERMINATED, (S._report_transport_error,)),
    (CONFIRMED, "timer_I"): (TERMINATED, ()),
    (ACCEPTED, "tu_2xx"): (ACCEPTED, (S._send_response,)),  # the UAS core's 2xx retransmits
    (ACCEPTED, "ack"): (ACCEPTED, (S._pass_ack_up,)),
    (ACCEPTED, "timer_L"): (TERMINATED, ()),
}

# RFC 3261 Figure 8.
NON_INVITE_SERVER: Table = {
    (TRYING, "tu_1xx"): (PROCEEDING, (S._send_response,)),
    (TRYING, "tu_final"): (COMPLETED, (S._send_response, S._start_j)),
    (TRYING, "transport_error"): (TERMINATED, (S._report_transport_error,)),
    (PROCEEDING, "request"): (PROCEEDING, (S._resend_last_response,)),
    (PROCEEDING, "tu_1xx"): (PROCEEDING, (S._send_response,)),
    (PROCEEDING, "tu_final"): (COMPLETED, (S._send_response, S._start_j)),
    (PROCEEDING, "transport_error"): (TERMINATED, (S._report_transport_error,)),
    (COMPLETED, "request"): (COMPLETED, (S._resend_last_response,)),
    (COMPLETED, "timer_J"): (TERMINATED, ()),
    (COMPLETED, "transport_error"): (TERMINATED, ()),
}

del C, S


# ---------------------------------------------------------------------------------------------
# Message construction owned by the transaction layer
# ---------------------------------------------------------------------------------------------


def ack_for_non_2xx(request: Request, response: Response) -> Request:
    """§17.1.1.3: the ACK the INVITE client transaction sends for a 300-699 response."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for name in ("Max-Forwards", "From"):
        value = request.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq[0]} ACK")
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    return Request("ACK", request.uri, headers)


def cancel_for(request: Request) -> Request:
    """§9.1: CANCEL with the INVITE's Request-URI, Call-ID, To, From, CSeq number, top Via
    (same branch) and Route set."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for name in ("Max-Forwards", "From", "To"):
        value = request.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq[0]} CANCEL")
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    return Request("CANCEL", request.uri, headers)


def server_key(request: Request, method: str | None = None, via: Via | None = None) -> tuple:
    """§17.2.3: the key matching a request to a server transaction.

    An ACK matches the INVITE it acknowledges; a CANCEL has its own transaction but can look up
    its INVITE by passing ``method="INVITE"``.
    """
    if via is None:
        via = request.vias[0]
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        return (branch, via.host.lower(), via.port, method)
    # RFC 2543 peers (no magic cookie): §17.2.3's fallback on the request's identity.
    return (
        "rfc2543",
        request.uri,
        tag_of(request.headers.get("From")),
        request.call_id,
        request.cseq[0],
        str(via),
        method,
    )


def _merge_key(request: Request) -> tuple:
    return (tag_of(request.headers.get("From")), request.call_id, request.cseq)


# ---------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------


class TransactionLayer:
    def __init__(self, settings: TimerSettings = DEFAULT_TIMERS) -> None:
        self.settings = settings
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple, ServerTransaction] = {}
        self._merges: dict[tuple, tuple] = {}
        self._events: deque[TransactionEvent] = deque()
        self._outbox: deque[SendMessage] = deque()
        self._heap: list[tuple[float, int, _Transaction, str]] = []
        self._sequence = itertools.count()

    # -- inputs -------------------------------------------------------------------------------

    def receive(self, message: Request | Response, flow: Flow, now: float) -> None:
        """Feed one parsed message that arrived on ``flow``."""
        try:
            if isinstance(message, Request):
                self._receive_request(message, flow, now)
            else:
                self._receive_response(message, flow, now)
        except SipParseError as exc:
            # A header we needed (Via, CSeq, From, Call-ID) is malformed: a remote error.
            log.info("malformed %s from %s: %s", _describe(message), flow, exc)
            if isinstance(message, Request) and message.method != "ACK":
                self._send_stateless_error(message, flow, exc.status, exc.reason)

    def send_request(self, request: Request, flow: Flow, now: float) -> ClientTransaction:
        """Start a client transaction. A request without Via gets one for ``flow`` (§8.1.1.7,
        §18.1.1) with a fresh branch and ``rport`` (RFC 3581)."""
        if request.method == "ACK":
            raise TransactionError("ACK for a 2xx has no transaction: use send_stateless")
        if "Via" not in request.headers:
            request.headers = _with_top_via(request.headers, via_for(flow, new_branch()))
        transaction = ClientTransaction(self, request, flow, now)
        self._clients[(transaction.branch, request.method)] = transaction
        return transaction

    def respond(self, transaction: ServerTransaction, response: Response, now: float) -> None:
        transaction.respond(response, now)

    def cancel(self, transaction: ClientTransaction, now: float) -> None:
        """§9.1: cancel a pending INVITE. Before any provisional response the CANCEL waits for
        one; after a final response there is nothing to cancel."""
        if not transaction.invite or transaction.cancelled:
            return
        transaction.cancelled = True
        if transaction.state is State.CALLING:
            transaction.cancel_pending = True
        elif transaction.state is State.PROCEEDING:
            self._send_cancel(transaction, now)

    def send_stateless(self, message: Request | Response, flow: Flow) -> None:
        """Send outside any transaction: ACK for a 2xx and 2xx retransmissions (§13)."""
        self._send(message, flow)

    def flow_failed(self, flow: Flow, now: float) -> None:
        """The edge could not send on ``flow`` (or the connection closed): §17.1.4, §17.2.4."""
        for transaction in list(self._clients.values()):
            if transaction.flow == flow:
                transaction._stimulate("transport_error", now)
        for transaction in list(self._servers.values()):
            if transaction.response_flow == flow:
                transaction._stimulate("transport_error", now)

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, transaction, name = heapq.heappop(heap)
            transaction._fire_due(name, deadline, now)

    # -- outputs ------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, transaction, name = heap[0]
            if transaction._deadlines.get(name) == deadline:
                return deadline
            heapq.heappop(heap)  # stale: stopped or restarted
        return None

    def next_event(self) -> TransactionEvent | None:
        return self._events.popleft() if self._events else None

    def messages_to_send(self) -> list[SendMessage]:
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def server_transaction_for(self, request: Request) -> ServerTransaction | None:
        return self._servers.get(server_key(request))

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    # -- internals ----------------------------------------------------------------------------

    def _receive_request(self, request: Request, flow: Flow, now: float) -> None:
        if request.cseq[1] != request.method:
            raise SipParseError("CSeq method does not match the request method")
        via = stamp_received(request, flow.remote)
        if via is None:
            raise SipParseError("Request without Via")
        key = server_key(request, via=via)
        transaction = self._servers.get(key)
        if request.method == "ACK":
            if transaction is not None:
                transaction._stimulate("ack", now, request)
            else:
                self._emit(AckReceived(request, flow))
            return
        if transaction is not None:
            transaction._stimulate("request", now, request)  # a retransmission (§17.2.1)
            return
        if request.method == "CANCEL":
            self._receive_cancel(request, flow, key, now, via)
            return
        merge_key = None
        if tag_of(request.headers.get("To")) is None:
            merge_key = _merge_key(request)
            if merge_key in self._merges:
                # §8.2.2.2: the same request reached us twice by different paths.
                merged = self._new_server(request, flow, key, None, now, via)
                merged.respond(make_response(request, 482, to_tag=new_tag()), now)
                return
        transaction = self._new_server(request, flow, key, merge_key, now, via)
        self._emit(RequestReceived(request, transaction, flow))

    def _receive_cancel(
        self, cancel: Request, flow: Flow, key: tuple, now: float, via: Via
    ) -> None:
        transaction = self._new_server(cancel, flow, key, None, now, via)
        invite = self._servers.get(server_key(cancel, "INVITE", via))
        if invite is None:
            transaction.respond(make_response(cancel, 481), now)  # §9.2
            return
        tag = invite.to_tag or new_tag()
        transaction.respond(make_response(cancel, 200, to_tag=tag), now)
        if invite.state is State.PROCEEDING:
            invite.respond(make_response(invite.request, 487, to_tag=tag), now)
            self._emit(CancelReceived(invite, cancel))

    def _new_server(
        self,
        request: Request,
        flow: Flow,
        key: tuple,
        merge_key: tuple | None,
        now: float,
        via: Via | None = None,
    ) -> ServerTransaction:
        transaction = ServerTransaction(self, request, flow, key, now, via)
        if not transaction.terminated:
            self._servers[key] = transaction
            if merge_key is not None:
                self._merges[merge_key] = key
        return transaction

    def _receive_response(self, response: Response, flow: Flow, now: float) -> None:
        vias = response.vias
        if not vias:
            raise SipParseError("Response without Via")
        transaction = self._clients.get((vias[0].branch or "", response.cseq[1]))
        if transaction is None:
            self._emit(StrayResponseReceived(response, flow))
            return
        transaction.receive_response(response, now)

    def _send_cancel(self, invite: ClientTransaction, now: float) -> None:
        self.send_request(cancel_for(invite.request), invite.flow, now)
        invite._start("cancel", now, self.settings.timer_b())

    def _send_stateless_error(self, request: Request, flow: Flow, status: int, reason: str) -> None:
        try:
            response = make_response(request, status, reason)
            via = response.vias[0]
        except (SipParseError, ValueError, IndexError):
            log.info("cannot answer malformed request from %s: dropped", flow)
            return
        self._send(response, response_flow(flow, via))

    def _forget(self, transaction: _Transaction) -> None:
        if isinstance(transaction, ClientTransaction):
            key = (transaction.branch, transaction.method)
            if self._clients.get(key) is transaction:
                del self._clients[key]
        elif (
            isinstance(transaction, ServerTransaction)
            and self._servers.get(transaction.key) is transaction
        ):
            del self._servers[transaction.key]
            if tag_of(transaction.request.headers.get("To")) is None:
                merge_key = _merge_key(transaction.request)
                if self._merges.get(merge_key) == transaction.key:
                    del self._merges[merge_key]

    def _schedule(self, deadline: float, transaction: _Transaction, name: str) -> None:
        heapq.heappush(self._heap, (deadline, next(self._sequence), transaction, name))

    def _emit(self, event: TransactionEvent) -> None:
        self._events.append(event)

    def _send(self, message: Request | Response, flow: Flow) -> None:
        self._outbox.append(SendMessage(message, flow))


def via_for(flow: Flow, branch: str) -> str:
    host, port = flow.local
    if ":" in host:
        host = f"[{host}]"
    return f"SIP/2.0/{flow.transport.upper()} {host}:{port};branch={branch};rport"


def _with_top_via(headers: Headers, via: str) -> Headers:
    rebuilt = Headers([("Via", via)])
    for name, value in headers.items():
        rebuilt.add(name, value)
    return rebuilt


def _describe(message: Request | Response) -> str:
    if isinstance(message, Request):
        return f"{message.method} request"
    return f"{message.status} response"
