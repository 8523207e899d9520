"""RFC 3261 §17 transactions driven with a fake clock (seconds), no sockets, no sleeps."""

import pytest

from dialbridge.sip.flow import Flow
from dialbridge.sip.message import Headers, Request, Response, make_response, parse_message
from dialbridge.sip.timers import TimerSettings
from dialbridge.sip.transaction import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    State,
    StrayResponseReceived,
    TransactionError,
    TransactionLayer,
    TransactionTimedOut,
    TransportFailed,
    ack_for_non_2xx,
)

US = ("127.0.0.1", 5060)
PEER = ("127.0.0.1", 40000)
UDP = Flow("udp", US, PEER)
TCP = Flow("tcp", US, PEER, connection=object())
T1 = 0.5


def request(method="INVITE", branch="z9hG4bKabc", to_tag=None, cseq=1, via_host="127.0.0.1"):
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    return Request(
        method,
        "sip:bob@example.com",
        Headers(
            [
                ("Via", f"SIP/2.0/UDP {via_host}:40000;branch={branch};rport"),
                ("Max-Forwards", "70"),
                ("From", "<sip:alice@example.com>;tag=ftag"),
                ("To", to),
                ("Call-ID", "call-1"),
                ("CSeq", f"{cseq} {method}"),
            ]
        ),
    )


def outgoing(method="INVITE"):
    """A request as the UA core builds it: no Via yet (the layer adds it)."""
    return Request(
        method,
        "sip:bob@127.0.0.1:40000",
        Headers(
            [
                ("Max-Forwards", "70"),
                ("From", "<sip:alice@example.com>;tag=ftag"),
                ("To", "<sip:bob@example.com>"),
                ("Call-ID", "call-2"),
                ("CSeq", f"1 {method}"),
            ]
        ),
    )


def wire(message):
    """Round-trip through bytes so tests see what a peer would."""
    return parse_message(message.to_bytes())


def sent(layer):
    return [order.message for order in layer.messages_to_send()]


def events(layer):
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def run_until(layer, end):
    """Fire every timer due up to ``end``; return (time, message) for everything sent."""
    out = []
    while (deadline := layer.get_timer()) is not None and deadline <= end:
        layer.handle_timer(deadline)
        out.extend((deadline, m) for m in sent(layer))
    return out


def reply_to(req, status, to_tag="ttag"):
    return wire(make_response(wire(req), status, to_tag=to_tag if status > 100 else None))


# --- INVITE client (Figure 5) -----------------------------------------------------------------


def test_invite_client_retransmits_on_timer_a():
    layer = TransactionLayer(TimerSettings(t1=T1))
    layer.send_request(outgoing(), UDP, now=0.0)
    assert len(sent(layer)) == 1
    times = [t for t, m in run_until(layer, 10.0) if isinstance(m, Request)]
    # §17.1.1.2: T1, then doubling: 0.5, 1.5, 3.5, 7.5
    assert times == [0.5, 1.5, 3.5, 7.5]


def test_invite_client_adds_via_with_branch_and_rport():
    layer = TransactionLayer()
    layer.send_request(outgoing(), UDP, now=0.0)
    via = sent(layer)[0].vias[0]
    assert via.branch.startswith("z9hG4bK")
    assert (via.host, via.port, via.transport) == ("127.0.0.1", 5060, "UDP")
    assert "rport" in via.params


def test_timer_b_times_out():
    layer = TransactionLayer(TimerSettings(t1=T1))
    txn = layer.send_request(outgoing(), UDP, now=0.0)
    run_until(layer, 31.9)
    assert not any(isinstance(e, TransactionTimedOut) for e in events(layer))
    run_until(layer, 32.0)
    assert [type(e) for e in events(layer)] == [TransactionTimedOut]
    assert txn.state is State.TERMINATED
    assert len(layer) == 0


def test_reliable_transport_skips_retransmissions():
    layer = TransactionLayer(TimerSettings(t1=T1))
    layer.send_request(outgoing(), TCP, now=0.0)
    sent(layer)
    assert run_until(layer, 40.0) == []
    assert isinstance(events(layer)[0], TransactionTimedOut)


def test_provisional_stops_retransmission_and_timer_b():
    layer = TransactionLayer(TimerSettings(t1=T1))
    txn = layer.send_request(outgoing(), UDP, now=0.0)
    invite = sent(layer)[0]
    layer.receive(reply_to(invite, 180), UDP, now=0.1)
    assert txn.state is State.PROCEEDING
    assert run_until(layer, 100.0) == []
    evs = events(layer)
    assert [type(e) for e in evs] == [ResponseReceived]
    assert evs[0].response.status == 180


def test_non_2xx_final_is_acked_by_the_transaction_and_retransmits_absorbed():
    layer = TransactionLayer(TimerSettings(t1=T1))
    txn = layer.send_request(outgoing(), UDP, now=0.0)
    invite = sent(layer)[0]
    busy = reply_to(invite, 486)
    layer.receive(busy, UDP, now=0.1)
    (ack,) = sent(layer)
    assert ack.method == "ACK"
    assert ack.vias[0].branch == invite.vias[0].branch  # §17.1.1.3: same branch
    assert ack.to_addr.tag == "ttag" and ack.cseq == (1, "ACK")
    assert txn.state is State.COMPLETED
    layer.receive(busy, UDP, now=0.2)  # retransmitted 486: ACK again, not passed up
    assert [m.method for m in sent(layer)] == ["ACK"]
    assert len(events(layer)) == 1
    run_until(layer, 0.1 + 32.0)  # Timer D
    assert txn.state is State.TERMINATED


def test_2xx_retransmissions_reach_the_tu_in_accepted_state():
    layer = TransactionLayer(TimerSettings(t1=T1))
    txn = layer.send_request(outgoing(), UDP, now=0.0)
    invite = sent(layer)[0]
    ok = reply_to(invite, 200)
    layer.receive(ok, UDP, now=0.1)
    layer.receive(ok, UDP, now=0.6)
    assert txn.state is State.ACCEPTED
    assert [e.response.status for e in events(layer)] == [200, 200]
    assert sent(layer) == []  # the TU sends the ACK for a 2xx (§13.2.2.4)
    run_until(layer, 0.1 + 64 * T1)  # Timer M (RFC 6026)
    assert txn.state is State.TERMINATED
    layer.receive(ok, UDP, now=40.0)
    assert [type(e) for e in events(layer)] == [StrayResponseReceived]


def test_cancel_before_final():
    layer = TransactionLayer(TimerSettings(t1=T1))
    txn = layer.send_request(outgoing(), UDP, now=0.0)
    invite = sent(layer)[0]
    layer.cancel(txn, now=0.05)
    assert sent(layer) == []  # §9.1: no CANCEL before a provisional response
    layer.receive(reply_to(invite, 180), UDP, now=0.1)
    (cancel,) = sent(layer)
    assert cancel.method == "CANCEL"
    assert cancel.vias[0].branch == invite.vias[0].branch
    assert cancel.cseq == (1, "CANCEL") and cancel.uri == invite.uri
    layer.receive(reply_to(cancel, 200), UDP, now=0.2)
    layer.receive(reply_to(invite, 487), UDP, now=0.25)
    statuses = [e.response.status for e in events(layer) if isinstance(e, ResponseReceived)]
    assert statuses == [180, 200, 487]
    assert [m.method for m in sent(layer)] == ["ACK"]
    assert txn.state is State.COMPLETED


def test_cancel_without_final_response_gives_up_after_64_t1():
    layer = TransactionLayer(TimerSettings(t1=T1))
    txn = layer.send_request(outgoing(), UDP, now=0.0)
    invite = sent(layer)[0]
    layer.receive(reply_to(invite, 180), UDP, now=0.1)
    layer.cancel(txn, now=1.0)
    cancel = sent(layer)[0]
    layer.receive(reply_to(cancel, 200), UDP, now=1.1)
    run_until(layer, 1.0 + 64 * T1)
    assert txn.state is State.TERMINATED
    assert any(isinstance(e, TransactionTimedOut) and e.transaction is txn for e in events(layer))


# --- non-INVITE client (Figure 6) --------------------------------------------------------------


def test_non_invite_client_retransmits_capped_at_t2():
    layer = TransactionLayer(TimerSettings(t1=T1, t2=4.0))
    layer.send_request(outgoing("INFO"), UDP, now=0.0)
    sent(layer)
    times = [t for t, m in run_until(layer, 20.0)]
    # 0.5, +1, +2, +4, +4, ...
    assert times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]


def test_non_invite_client_proceeding_retransmits_every_t2():
    layer = TransactionLayer(TimerSettings(t1=T1, t2=4.0))
    layer.send_request(outgoing("INFO"), UDP, now=0.0)
    info = sent(layer)[0]
    layer.receive(reply_to(info, 100), UDP, now=0.1)
    times = [t for t, m in run_until(layer, 9.0)]
    assert times == [0.5, 4.5, 8.5]


def test_timer_f_times_out_non_invite():
    layer = TransactionLayer(TimerSettings(t1=T1))
    txn = layer.send_request(outgoing("INFO"), UDP, now=0.0)
    run_until(layer, 32.0)
    assert txn.state is State.TERMINATED
    assert isinstance(events(layer)[-1], TransactionTimedOut)


def test_non_invite_final_response_retransmits_absorbed_until_timer_k():
    layer = TransactionLayer(TimerSettings(t1=T1, t4=5.0))
    txn = layer.send_request(outgoing("INFO"), UDP, now=0.0)
    info = sent(layer)[0]
    ok = reply_to(info, 200)
    layer.receive(ok, UDP, now=0.1)
    layer.receive(ok, UDP, now=0.2)
    assert len(events(layer)) == 1
    run_until(layer, 5.1)
    assert txn.state is State.TERMINATED


def test_transport_error_terminates_client_transaction():
    layer = TransactionLayer()
    txn = layer.send_request(outgoing("OPTIONS"), TCP, now=0.0)
    layer.flow_failed(TCP, now=0.1)
    assert txn.state is State.TERMINATED
    assert [type(e) for e in events(layer)] == [TransportFailed]


# --- INVITE server (Figure 7) -----------------------------------------------------------------


def test_invite_server_sends_100_trying_after_200_ms():
    layer = TransactionLayer(TimerSettings(trying_delay=0.2))
    layer.receive(request(), UDP, now=0.0)
    assert sent(layer) == []
    assert layer.get_timer() == pytest.approx(0.2)
    layer.handle_timer(0.2)
    assert [m.status for m in sent(layer)] == [100]


def test_invite_server_sends_no_100_when_tu_answers_quickly():
    layer = TransactionLayer(TimerSettings(trying_delay=0.2))
    layer.receive(request(), UDP, now=0.0)
    (event,) = events(layer)
    event.transaction.respond(make_response(event.request, 180, to_tag="t"), now=0.1)
    run_until(layer, 0.5)
    assert [m.status for m in sent(layer)] == [180]


def test_invite_server_sends_100_at_once_when_configured():
    layer = TransactionLayer(TimerSettings(trying_delay=0))
    layer.receive(request(), UDP, now=0.0)
    assert [m.status for m in sent(layer)] == [100]


def test_retransmitted_invite_gets_last_provisional_again():
    layer = TransactionLayer(TimerSettings(trying_delay=0))
    layer.receive(request(), UDP, now=0.0)
    (event,) = events(layer)
    event.transaction.respond(make_response(event.request, 180, to_tag="t"), now=0.1)
    layer.receive(request(), UDP, now=0.5)
    assert [m.status for m in sent(layer)] == [100, 180, 180]
    assert events(layer) == []  # not a new request for the TU


def test_invite_server_retransmits_non_2xx_on_timer_g_until_ack():
    layer = TransactionLayer(TimerSettings(t1=T1, t2=4.0, trying_delay=0))
    layer.receive(request(), UDP, now=0.0)
    (event,) = events(layer)
    sent(layer)
    event.transaction.respond(make_response(event.request, 486, to_tag="t"), now=0.0)
    assert [m.status for m in sent(layer)] == [486]
    times = [t for t, m in run_until(layer, 8.0)]
    assert times == [0.5, 1.5, 3.5, 7.5]
    layer.receive(request("ACK", to_tag="t"), UDP, now=8.0)
    assert event.transaction.state is State.CONFIRMED
    assert run_until(layer, 100.0) == []
    assert event.transaction.state is State.TERMINATED  # Timer I


def test_timer_h_reports_missing_ack():
    layer = TransactionLayer(TimerSettings(t1=T1, trying_delay=0))
    layer.receive(request(), UDP, now=0.0)
    (event,) = events(layer)
    event.transaction.respond(make_response(event.request, 404, to_tag="t"), now=0.0)
    run_until(layer, 32.0)
    assert [type(e) for e in events(layer)] == [TransactionTimedOut]


def test_2xx_from_tu_moves_server_to_accepted_and_absorbs_invite_retransmissions():
    layer = TransactionLayer(TimerSettings(t1=T1, trying_delay=0))
    layer.receive(request(), UDP, now=0.0)
    (event,) = events(layer)
    sent(layer)
    event.transaction.respond(make_response(event.request, 200, to_tag="t"), now=0.0)
    assert event.transaction.state is State.ACCEPTED
    sent(layer)
    layer.receive(request(), UDP, now=0.3)
    assert sent(layer) == []  # RFC 6026 §7.1: the UAS core retransmits the 2xx, not us
    layer.receive(request("ACK", branch="z9hG4bKother", to_tag="t"), UDP, now=0.4)
    assert [type(e) for e in events(layer)] == [AckReceived]
    run_until(layer, 32.0)
    assert event.transaction.state is State.TERMINATED


def test_answering_twice_with_a_final_response_is_a_local_error():
    layer = TransactionLayer(TimerSettings(trying_delay=0))
    layer.receive(request("OPTIONS"), UDP, now=0.0)
    (event,) = events(layer)
    event.transaction.respond(make_response(event.request, 200), now=0.0)
    with pytest.raises(TransactionError):
        event.transaction.respond(make_response(event.request, 500), now=0.0)


# --- non-INVITE server (Figure 8) --------------------------------------------------------------


def test_non_invite_server_absorbs_retransmission():
    layer = TransactionLayer(TimerSettings(t1=T1))
    layer.receive(request("INFO", to_tag="t"), UDP, now=0.0)
    layer.receive(request("INFO", to_tag="t"), UDP, now=0.4)  # before any response: absorbed
    (event,) = events(layer)
    assert sent(layer) == []
    event.transaction.respond(make_response(event.request, 200), now=0.5)
    layer.receive(request("INFO", to_tag="t"), UDP, now=1.0)  # after: the 200 again
    assert [m.status for m in sent(layer)] == [200, 200]
    assert events(layer) == []
    run_until(layer, 0.5 + 64 * T1)  # Timer J
    assert event.transaction.state is State.TERMINATED


def test_non_invite_server_over_tcp_terminates_at_once():
    layer = TransactionLayer()
    layer.receive(request("BYE", to_tag="t"), TCP, now=0.0)
    (event,) = events(layer)
    event.transaction.respond(make_response(event.request, 200), now=0.0)
    layer.handle_timer(0.0)
    assert event.transaction.state is State.TERMINATED


# --- CANCEL, merged requests, rport ------------------------------------------------------------


def test_incoming_cancel_answers_200_and_487():
    layer = TransactionLayer(TimerSettings(trying_delay=0))
    layer.receive(request(), UDP, now=0.0)
    (event,) = events(layer)
    event.transaction.respond(make_response(event.request, 180, to_tag="t1"), now=0.1)
    sent(layer)
    layer.receive(request("CANCEL"), UDP, now=0.2)
    responses = sent(layer)
    assert [(r.status, r.cseq[1]) for r in responses] == [(200, "CANCEL"), (487, "INVITE")]
    assert responses[1].to_addr.tag == "t1"  # same dialog as the 180
    (cancelled,) = events(layer)
    assert isinstance(cancelled, CancelReceived) and cancelled.transaction is event.transaction
    with pytest.raises(TransactionError):
        event.transaction.respond(make_response(event.request, 200, to_tag="t1"), now=0.3)


def test_cancel_for_unknown_transaction_gets_481():
    layer = TransactionLayer()
    layer.receive(request("CANCEL"), UDP, now=0.0)
    assert [m.status for m in sent(layer)] == [481]
    assert events(layer) == []


def test_cancel_after_final_response_changes_nothing():
    layer = TransactionLayer(TimerSettings(trying_delay=0))
    layer.receive(request(), UDP, now=0.0)
    (event,) = events(layer)
    event.transaction.respond(make_response(event.request, 200, to_tag="t1"), now=0.1)
    sent(layer)
    layer.receive(request("CANCEL"), UDP, now=0.2)
    assert [m.status for m in sent(layer)] == [200]
    assert events(layer) == []


def test_merged_request_gets_482():
    layer = TransactionLayer(TimerSettings(trying_delay=0))
    layer.receive(request(branch="z9hG4bKpath1"), UDP, now=0.0)
    sent(layer)
    layer.receive(request(branch="z9hG4bKpath2"), UDP, now=0.1)
    assert [m.status for m in sent(layer)] == [100, 482]  # 100 from its own INVITE transaction
    assert len(events(layer)) == 1  # only the first reached the TU


def test_rport_and_received_are_filled_and_response_goes_to_source():
    layer = TransactionLayer()
    nat_flow = Flow("udp", US, ("203.0.113.7", 61000))
    layer.receive(request("OPTIONS", via_host="10.0.0.5"), nat_flow, now=0.0)
    (event,) = events(layer)
    via = event.request.vias[0]
    assert via.params["received"] == "203.0.113.7" and via.params["rport"] == "61000"
    event.transaction.respond(make_response(event.request, 200), now=0.0)
    (order,) = layer.messages_to_send()
    assert order.flow.remote == ("203.0.113.7", 61000)
    assert order.flow.local == US  # same socket as the request (jigasi-protocol.md §1.1)


def test_response_without_rport_goes_to_sent_by_port_at_received_address():
    layer = TransactionLayer()
    req = request("OPTIONS", via_host="10.0.0.5")
    req.headers.set("Via", "SIP/2.0/UDP 10.0.0.5:5072;branch=z9hG4bKx")
    layer.receive(req, Flow("udp", US, ("203.0.113.7", 61000)), now=0.0)
    (event,) = events(layer)
    event.transaction.respond(make_response(event.request, 200), now=0.0)
    (order,) = layer.messages_to_send()
    assert order.flow.remote == ("203.0.113.7", 5072)


def test_request_with_mismatched_cseq_method_is_answered_400():
    layer = TransactionLayer()
    req = request("INFO", to_tag="t")
    req.headers.set("CSeq", "1 BYE")
    layer.receive(req, UDP, now=0.0)
    assert [m.status for m in sent(layer)] == [400]
    assert events(layer) == []


def test_ack_for_non_2xx_copies_route_and_uses_response_to():
    invite = request()
    invite.headers.add("Route", "<sip:proxy.example.com;lr>")
    resp = make_response(invite, 486, to_tag="zz")
    ack = ack_for_non_2xx(invite, resp)
    assert ack.headers.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    assert ack.to_addr.tag == "zz"
    assert isinstance(resp, Response)


def test_stray_ack_without_transaction_goes_to_tu():
    layer = TransactionLayer()
    layer.receive(request("ACK", to_tag="t"), UDP, now=0.0)
    (event,) = events(layer)
    assert isinstance(event, AckReceived)


def test_incoming_request_is_reported_once():
    layer = TransactionLayer()
    layer.receive(request("OPTIONS"), UDP, now=0.0)
    assert [type(e) for e in events(layer)] == [RequestReceived]


@pytest.mark.parametrize(
    "value",
    [
        "<sip:bob@example.com>;tag=abc",
        '"Bob ; tag=no" <sip:bob@example.com;tag=uri>;foo=1;tag=abc',
        "sip:bob@example.com;tag=abc",
        "<sip:bob@example.com> ; TAG = abc",
        "<sip:bob@example.com;tag=uri-param-not-header>",
        "Bob <sip:bob@example.com>",
    ],
)
def test_fast_tag_lookup_agrees_with_full_parse(value):
    from dialbridge.sip.flow import tag_of
    from dialbridge.sip.message import NameAddr

    assert tag_of(value) == NameAddr.parse(value).tag
