"""RFC 3261 §12-§15 dialogs: two DialogLayers wired back to back through bytes, fake clock."""

import pytest

from dialbridge.sip.dialog import (
    Dialog,
    DialogAckReceived,
    DialogLayer,
    DialogState,
    DialogTerminated,
    IncomingRequest,
    InDialogRequest,
    InviteCancelled,
    ResponseToRequest,
    build_request,
)
from dialbridge.sip.flow import Flow
from dialbridge.sip.message import Headers, Request, make_response, parse_message
from dialbridge.sip.timers import TimerSettings

A = ("127.0.0.1", 5060)  # alice (UAC)
B = ("127.0.0.1", 5070)  # bob (UAS)
A_TO_B = Flow("udp", A, B)
B_TO_A = Flow("udp", B, A)
T1 = 0.5
SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


class Pair:
    """Alice and Bob, and a wire that may lose messages."""

    def __init__(self, trying_delay=0.0):
        settings = TimerSettings(t1=T1, trying_delay=trying_delay)
        self.alice = DialogLayer(settings)
        self.bob = DialogLayer(settings)
        self.now = 0.0
        self.drop = lambda message: False
        self.log = []  # (sender, message)

    def pump(self):
        for _ in range(50):
            moved = False
            for sender, receiver, flow in (
                (self.alice, self.bob, B_TO_A),
                (self.bob, self.alice, A_TO_B),
            ):
                for order in sender.messages_to_send():
                    moved = True
                    message = parse_message(order.message.to_bytes())
                    self.log.append((sender, message, self.now))
                    if not self.drop(message):
                        receiver.receive(message, flow, self.now)
            if not moved:
                return

    def advance(self, to):
        while True:
            timers = [t for t in (self.alice.get_timer(), self.bob.get_timer()) if t is not None]
            due = min(timers) if timers else None
            if due is None or due > to:
                break
            self.now = max(self.now, due)
            self.alice.handle_timer(self.now)
            self.bob.handle_timer(self.now)
            self.pump()
        self.now = to

    def sent_by(self, layer, kind=None):
        return [m for s, m, _ in self.log if s is layer and (kind is None or _kind(m) == kind)]

    def times(self, layer, kind):
        return [t for s, m, t in self.log if s is layer and _kind(m) == kind]


def _kind(message):
    return message.method if isinstance(message, Request) else message.status


def events(layer):
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def invite(body=SDP, extra=()):
    return build_request(
        "INVITE",
        "sip:bob@127.0.0.1:5070",
        from_="<sip:alice@example.com>",
        contact="<sip:alice@127.0.0.1:5060>",
        headers=extra,
        body=body,
    )


def establish(pair, body=SDP, record_route=()):
    """Alice INVITEs, Bob rings then answers. Returns (alice_txn, alice_dialog, bob_dialog)."""
    req = invite(body, extra=[("Record-Route", r) for r in record_route])
    txn = pair.alice.send_request(req, A_TO_B, pair.now)
    pair.pump()
    (incoming,) = events(pair.bob)
    assert isinstance(incoming, IncomingRequest)
    ringing = make_response(incoming.request, 180, to_tag="bobtag")
    ringing.headers.add("Contact", "<sip:bob@127.0.0.1:5070>")
    pair.bob.respond(incoming.transaction, ringing, pair.now)
    pair.pump()
    ok = make_response(incoming.request, 200, to_tag="bobtag", body=SDP)
    ok.headers.add("Contact", "<sip:bob@127.0.0.1:5070>")
    ok.headers.add("Content-Type", "application/sdp")
    bob_dialog = pair.bob.respond(incoming.transaction, ok, pair.now)
    pair.pump()
    responses = [e for e in events(pair.alice) if isinstance(e, ResponseToRequest)]
    assert [r.response.status for r in responses] == [100, 180, 200]
    return txn, responses[-1].dialog, bob_dialog


def test_dialog_goes_from_early_on_180_to_confirmed_on_200():
    pair = Pair()
    txn = pair.alice.send_request(invite(), A_TO_B, 0.0)
    pair.pump()
    (incoming,) = events(pair.bob)
    ringing = make_response(incoming.request, 180, to_tag="bobtag")
    ringing.headers.add("Contact", "<sip:bob@127.0.0.1:5070>")
    pair.bob.respond(incoming.transaction, ringing, 0.0)
    pair.pump()
    early = [e for e in events(pair.alice) if isinstance(e, ResponseToRequest)][-1].dialog
    assert early.state is DialogState.EARLY
    assert early.id == (incoming.request.call_id, incoming.request.from_addr.tag, "bobtag")
    ok = make_response(incoming.request, 200, to_tag="bobtag")
    ok.headers.add("Contact", "<sip:bob@10.9.9.9:5070>")
    pair.bob.respond(incoming.transaction, ok, 0.0)
    pair.pump()
    assert early.state is DialogState.CONFIRMED
    assert early.remote_target == "sip:bob@10.9.9.9:5070"  # the 2xx Contact wins
    assert txn.method == "INVITE"


def test_uac_acks_2xx_with_invite_cseq_and_new_branch():
    pair = Pair()
    txn, alice_dialog, bob_dialog = establish(pair)
    (ack,) = pair.sent_by(pair.alice, "ACK")
    assert ack.cseq == (txn.request.cseq[0], "ACK")
    assert ack.vias[0].branch != txn.request.vias[0].branch
    assert ack.uri == "sip:alice@127.0.0.1:5060" or ack.uri == "sip:bob@127.0.0.1:5070"
    assert ack.uri == alice_dialog.remote_target
    (acked,) = [e for e in events(pair.bob) if isinstance(e, DialogAckReceived)]
    assert acked.dialog is bob_dialog
    assert bob_dialog.state is DialogState.CONFIRMED


def test_2xx_is_retransmitted_until_ack():
    pair = Pair()
    dropped = []

    def drop_first_ack(message):
        if isinstance(message, Request) and message.method == "ACK" and not dropped:
            dropped.append(message)
            return True
        return False

    pair.drop = drop_first_ack
    establish(pair)
    assert len(pair.sent_by(pair.bob, 200)) == 1
    pair.advance(0.5)  # T1: the 2xx again, and Alice ACKs it again
    assert len(pair.sent_by(pair.bob, 200)) == 2
    assert len(pair.sent_by(pair.alice, "ACK")) == 2
    assert any(isinstance(e, DialogAckReceived) for e in events(pair.bob))
    pair.advance(40.0)
    assert len(pair.sent_by(pair.bob, 200)) == 2  # stopped by the ACK
    # The retransmitted 200 did not reach Alice's TU a second time.
    assert not any(isinstance(e, ResponseToRequest) for e in events(pair.alice))


def test_2xx_retransmission_doubles_up_to_t2_then_gives_up_and_sends_bye():
    pair = Pair()
    pair.drop = lambda m: isinstance(m, Request) and m.method == "ACK"
    _, alice_dialog, bob_dialog = establish(pair)
    pair.advance(64 * T1)
    times = pair.times(pair.bob, 200)
    assert times[:5] == [0.0, 0.5, 1.5, 3.5, 7.5]
    assert all(b - a <= 4.0 + 1e-9 for a, b in zip(times, times[1:], strict=False))
    assert bob_dialog.terminated and bob_dialog.end_reason == "ack timeout"
    assert pair.sent_by(pair.bob, "BYE")
    assert alice_dialog.terminated  # the BYE reached Alice
    ended = [e for e in events(pair.bob) if isinstance(e, DialogTerminated)]
    assert ended and ended[0].reason == "ack timeout"


def test_offerless_invite_waits_for_tu_to_ack_with_the_answer():
    pair = Pair()
    req = invite(body=b"")
    txn = pair.alice.send_request(req, A_TO_B, 0.0)
    pair.pump()
    (incoming,) = events(pair.bob)
    ok = make_response(incoming.request, 200, to_tag="bobtag", body=SDP)
    ok.headers.add("Contact", "<sip:bob@127.0.0.1:5070>")
    ok.headers.add("Content-Type", "application/sdp")
    pair.bob.respond(incoming.transaction, ok, 0.0)
    pair.pump()
    assert pair.sent_by(pair.alice, "ACK") == []  # the TU owes the answer
    (final,) = [e for e in events(pair.alice) if e.response.status == 200]
    assert final.response.body == SDP
    pair.alice.send_ack(txn, final.response, b"v=0 answer", 0.1)
    pair.pump()
    (ack,) = pair.sent_by(pair.alice, "ACK")
    assert ack.body == b"v=0 answer"
    (acked,) = [e for e in events(pair.bob) if isinstance(e, DialogAckReceived)]
    assert acked.request.body == b"v=0 answer"


def test_overlapping_info_in_both_directions_both_complete():
    pair = Pair()
    _, alice_dialog, bob_dialog = establish(pair)
    events(pair.bob)
    alice_info = alice_dialog.create_request(
        "INFO", body=b'{"t":11}', content_type="application/json"
    )
    alice_txn = pair.alice.send_request(alice_info, alice_dialog.flow, 1.0, dialog=alice_dialog)
    pair.pump()
    (bob_sees,) = events(pair.bob)
    assert isinstance(bob_sees, InDialogRequest) and bob_sees.dialog is bob_dialog
    # Before answering, Bob sends his own INFO (Jigasi does this, jigasi-protocol.md §4.1).
    bob_info = bob_dialog.create_request("INFO", body=b"{}", content_type="application/json")
    bob_txn = pair.bob.send_request(bob_info, bob_dialog.flow, 1.1, dialog=bob_dialog)
    pair.pump()
    (alice_sees,) = events(pair.alice)
    assert alice_sees.request.method == "INFO"
    pair.alice.respond(alice_sees.transaction, make_response(alice_sees.request, 200), 1.2)
    pair.bob.respond(bob_sees.transaction, make_response(bob_sees.request, 200), 1.2)
    pair.pump()
    (alice_done,) = events(pair.alice)
    (bob_done,) = events(pair.bob)
    assert alice_done.transaction is alice_txn and alice_done.response.status == 200
    assert bob_done.transaction is bob_txn and bob_done.response.status == 200
    assert alice_dialog.local_seq == 2 and bob_dialog.local_seq == 1
    assert not alice_dialog.terminated and not bob_dialog.terminated


def test_481_to_an_in_dialog_request_ends_the_dialog_without_bye():
    pair = Pair()
    _, alice_dialog, bob_dialog = establish(pair)
    pair.bob.terminate(bob_dialog, "forgotten")  # Bob lost the dialog (e.g. a restart)
    pair.alice.send_request(alice_dialog.create_request("INFO"), A_TO_B, 1.0, dialog=alice_dialog)
    pair.pump()
    assert alice_dialog.terminated and alice_dialog.end_reason == "481 to INFO"
    assert not pair.sent_by(pair.alice, "BYE")


def test_request_for_unknown_dialog_gets_481():
    pair = Pair()
    _, alice_dialog, _ = establish(pair)
    ghost = alice_dialog.create_request("INFO")
    ghost.headers.set("Call-ID", "nonexistent")
    pair.alice.send_request(ghost, A_TO_B, 1.0)
    pair.pump()
    assert [e.response.status for e in events(pair.alice)] == [481]


def test_cseq_going_backwards_gets_500():
    pair = Pair()
    _, alice_dialog, _ = establish(pair)
    first = alice_dialog.create_request("INFO")
    pair.alice.send_request(first, A_TO_B, 1.0, dialog=alice_dialog)
    pair.pump()
    (incoming,) = [e for e in events(pair.bob) if isinstance(e, InDialogRequest)]
    pair.bob.respond(incoming.transaction, make_response(incoming.request, 200), 1.0)
    alice_dialog.local_seq -= 2
    stale = alice_dialog.create_request("OPTIONS")
    pair.alice.send_request(stale, A_TO_B, 1.1, dialog=alice_dialog)
    pair.pump()
    statuses = [e.response.status for e in events(pair.alice) if isinstance(e, ResponseToRequest)]
    assert statuses == [200, 500]


def test_reinvite_glare_gets_491():
    pair = Pair()
    _, alice_dialog, bob_dialog = establish(pair)
    events(pair.bob)
    pair.alice.send_request(
        alice_dialog.create_request("INVITE", body=SDP, content_type="application/sdp"),
        A_TO_B,
        1.0,
        dialog=alice_dialog,
    )
    pair.bob.send_request(
        bob_dialog.create_request("INVITE", body=SDP, content_type="application/sdp"),
        B_TO_A,
        1.0,
        dialog=bob_dialog,
    )
    pair.pump()
    alice_responses = [
        e.response.status for e in events(pair.alice) if isinstance(e, ResponseToRequest)
    ]
    bob_responses = [
        e.response.status for e in events(pair.bob) if isinstance(e, ResponseToRequest)
    ]
    assert 491 in alice_responses and 491 in bob_responses


def test_reinvite_refreshes_remote_target_and_its_2xx_is_acked():
    pair = Pair()
    _, alice_dialog, bob_dialog = establish(pair)
    events(pair.bob)
    reinvite = bob_dialog.create_request("INVITE", body=SDP, content_type="application/sdp")
    reinvite.headers.set("Contact", "<sip:bob@127.0.0.1:5099>")
    bob_txn = pair.bob.send_request(reinvite, B_TO_A, 2.0, dialog=bob_dialog)
    pair.pump()
    (incoming,) = [e for e in events(pair.alice) if isinstance(e, InDialogRequest)]
    assert alice_dialog.remote_target == "sip:bob@127.0.0.1:5099"
    ok = make_response(incoming.request, 200, body=SDP)
    ok.headers.add("Contact", "<sip:alice@127.0.0.1:5060>")
    pair.alice.respond(incoming.transaction, ok, 2.0)
    pair.pump()
    (done,) = [
        e for e in events(pair.bob) if isinstance(e, ResponseToRequest) and e.response.status >= 200
    ]
    assert done.transaction is bob_txn and done.response.status == 200
    acks = [m for m in pair.sent_by(pair.bob, "ACK")]
    assert acks and acks[-1].cseq == (reinvite.cseq[0], "ACK")
    assert any(isinstance(e, DialogAckReceived) for e in events(pair.alice))


def test_bye_ends_the_dialog_on_both_sides():
    pair = Pair()
    _, alice_dialog, bob_dialog = establish(pair)
    events(pair.bob)
    pair.alice.send_request(alice_dialog.create_request("BYE"), A_TO_B, 3.0, dialog=alice_dialog)
    assert alice_dialog.terminated
    pair.pump()
    bob_events = events(pair.bob)
    assert any(isinstance(e, DialogTerminated) and e.reason == "remote bye" for e in bob_events)
    (bye,) = [e for e in bob_events if isinstance(e, InDialogRequest)]
    pair.bob.respond(bye.transaction, make_response(bye.request, 200), 3.0)
    pair.pump()
    assert bob_dialog.terminated
    assert [e.response.status for e in events(pair.alice) if isinstance(e, ResponseToRequest)] == [
        200
    ]


def test_cancel_ends_the_early_dialog():
    pair = Pair()
    txn = pair.alice.send_request(invite(), A_TO_B, 0.0)
    pair.pump()
    (incoming,) = events(pair.bob)
    ringing = make_response(incoming.request, 180, to_tag="bobtag")
    ringing.headers.add("Contact", "<sip:bob@127.0.0.1:5070>")
    bob_early = pair.bob.respond(incoming.transaction, ringing, 0.0)
    pair.pump()
    pair.alice.cancel(txn, 0.1)
    pair.pump()
    assert any(isinstance(e, InviteCancelled) for e in events(pair.bob))
    assert bob_early.terminated
    statuses = [e.response.status for e in events(pair.alice) if isinstance(e, ResponseToRequest)]
    assert statuses[-2:] == [200, 487] or sorted(statuses[-2:]) == [200, 487]
    early = pair.alice.dialogs
    assert early == {}


def test_timeout_of_in_dialog_request_is_a_synthetic_408_and_ends_the_dialog():
    pair = Pair()
    _, alice_dialog, _ = establish(pair)
    pair.drop = lambda m: True  # the peer vanished
    txn = pair.alice.send_request(
        alice_dialog.create_request("INFO"), A_TO_B, 1.0, dialog=alice_dialog
    )
    pair.advance(1.0 + 64 * T1)
    done = [e for e in events(pair.alice) if isinstance(e, ResponseToRequest)]
    assert done[-1].transaction is txn and done[-1].response.status == 408 and done[-1].synthetic
    assert alice_dialog.terminated and alice_dialog.end_reason == "408 to INFO"
    assert pair.sent_by(pair.alice, "BYE")  # in case the peer is still there


def test_uas_copies_record_route_and_uac_uses_reversed_route_set():
    pair = Pair()
    routes = ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    _, alice_dialog, bob_dialog = establish(pair, record_route=routes)
    assert bob_dialog.route_set == routes
    assert alice_dialog.route_set == list(reversed(routes))
    info = alice_dialog.create_request("INFO")
    assert info.headers.get_all("Route") == list(reversed(routes))
    assert info.uri == alice_dialog.remote_target


def test_strict_route_puts_first_route_in_request_uri():
    dialog = Dialog(
        call_id="c",
        local_tag="l",
        remote_tag="r",
        local_uri="<sip:a@x>",
        remote_uri="<sip:b@y>",
        remote_target="sip:b@10.0.0.1",
        route_set=["<sip:strict.example.com>", "<sip:p2.example.com;lr>"],
        flow=A_TO_B,
        local_seq=1,
        remote_seq=None,
        is_uac=True,
    )
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:strict.example.com"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:b@10.0.0.1>"]


def test_rejected_invite_reports_final_and_no_dialog():
    pair = Pair()
    pair.alice.send_request(invite(), A_TO_B, 0.0)
    pair.pump()
    (incoming,) = events(pair.bob)
    pair.bob.respond(incoming.transaction, make_response(incoming.request, 486, to_tag="x"), 0.0)
    pair.pump()
    final = [e for e in events(pair.alice) if isinstance(e, ResponseToRequest)][-1]
    assert final.response.status == 486 and final.dialog is None
    assert pair.alice.dialogs == {} and pair.bob.dialogs == {}


@pytest.mark.parametrize("method", ["OPTIONS", "UPDATE", "INFO"])
def test_in_dialog_requests_reach_the_tu(method):
    pair = Pair()
    _, alice_dialog, bob_dialog = establish(pair)
    events(pair.bob)
    pair.alice.send_request(alice_dialog.create_request(method), A_TO_B, 1.0, dialog=alice_dialog)
    pair.pump()
    (event,) = events(pair.bob)
    assert isinstance(event, InDialogRequest) and event.request.method == method
    assert event.dialog is bob_dialog
    assert isinstance(event.request.headers, Headers)
