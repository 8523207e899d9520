"""Property tests: whatever parseable messages a peer sends, in whatever order and timing, the
sans-IO cores never raise, and every request the TU answers gets exactly one final response."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialbridge.sip.dialog import DialogLayer, IncomingRequest, InDialogRequest, build_request
from dialbridge.sip.flow import Flow
from dialbridge.sip.message import Request, Response, SipParseError, make_response, parse_message
from dialbridge.sip.timers import TimerSettings

US = ("127.0.0.1", 5060)
FLOW = Flow("udp", US, ("127.0.0.1", 5070))

methods = st.sampled_from(
    ["INVITE", "ACK", "BYE", "CANCEL", "INFO", "OPTIONS", "UPDATE", "REGISTER"]
)
tags = st.sampled_from([None, "a", "b", "ours0", "ours1"])
branches = st.sampled_from(["z9hG4bK1", "z9hG4bK2", "z9hG4bK3", "oldstyle"])
call_ids = st.sampled_from(["c1", "c2"])
contacts = st.sampled_from(["<sip:peer@127.0.0.1:5070>", "<sip:peer@[::1]>", "*", "garbage<<", ""])


@st.composite
def peer_request(draw):
    method = draw(methods)
    to_tag = draw(tags)
    to = "<sip:us@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    cseq_method = method if draw(st.integers(0, 9)) else "INVITE"
    lines = [
        f"{method} sip:us@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={draw(branches)};rport",
        f"From: <sip:peer@127.0.0.1>;tag={draw(st.sampled_from(['p1', 'p2']))}",
        f"To: {to}",
        f"Call-ID: {draw(call_ids)}",
        f"CSeq: {draw(st.integers(1, 4))} {cseq_method}",
    ]
    contact = draw(contacts)
    if contact:
        lines.append(f"Contact: {contact}")
    if draw(st.booleans()):
        lines.append("Record-Route: <sip:proxy.example;lr>")
    body = b"v=0\r\n" if draw(st.booleans()) else b""
    data = ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    return data


@st.composite
def peer_response(draw, sent):
    if not sent:
        return None
    request = draw(st.sampled_from(sent))
    status = draw(st.sampled_from([100, 180, 183, 200, 200, 401, 481, 486, 487, 500]))
    tag = draw(st.sampled_from(["x", "y"]))
    response = make_response(request, status, to_tag=tag if status > 100 else None)
    if 100 < status < 300 and draw(st.booleans()):
        response.headers.add("Contact", draw(st.sampled_from(["<sip:peer@127.0.0.1>", "bad<<"])))
    return response.to_bytes()


step = st.tuples(
    st.sampled_from(["request", "response", "time", "send", "answer"]),
    st.integers(0, 10_000),
    st.data(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=40))
def test_cores_survive_any_sequence(steps):
    layer = DialogLayer(TimerSettings(t1=0.5, trying_delay=0.2))
    now = 0.0
    sent: list[Request] = []
    pending = []
    for kind, number, data in steps:
        if kind == "request":
            raw = data.draw(peer_request())
            try:
                message = parse_message(raw)
            except SipParseError:
                continue  # the transport answers those; the cores never see them
            layer.receive(message, FLOW, now)
        elif kind == "response":
            raw = data.draw(peer_response(sent))
            if raw is not None:
                try:
                    message = parse_message(raw)
                except SipParseError:
                    continue
                layer.receive(message, FLOW, now)
        elif kind == "time":
            now += number / 1000
            layer.handle_timer(now)
        elif kind == "send":
            method = data.draw(st.sampled_from(["INVITE", "OPTIONS", "INFO"]))
            request = build_request(method, "sip:peer@127.0.0.1:5070", from_="<sip:us@127.0.0.1>",
                                    contact="<sip:us@127.0.0.1>", body=b"v=0\r\n" if number % 2 else b"")  # fmt: skip
            layer.send_request(request, FLOW, now)
            sent.append(parse_message(request.to_bytes()))
            if number % 3 == 0 and method == "INVITE":
                layer.cancel(layer.transactions._clients[(request.vias[0].branch, "INVITE")], now)
        elif kind == "answer" and pending:
            event = pending.pop(number % len(pending))
            status = data.draw(st.sampled_from([180, 200, 486]))
            if (
                event.transaction.last_response is not None
                and event.transaction.last_response.status >= 200
            ):
                continue
            if event.transaction.terminated:
                continue
            response = make_response(event.request, status, to_tag="ours0")
            response.headers.add("Contact", "<sip:us@127.0.0.1>")
            layer.respond(event.transaction, response, now)
            if status < 200:
                pending.append(event)
        while (event := layer.next_event()) is not None:
            if (
                isinstance(event, IncomingRequest | InDialogRequest)
                and event.request.method != "ACK"
            ):
                pending.append(event)
        for order in layer.messages_to_send():
            assert isinstance(order.message, Request | Response)
            order.message.to_bytes()
        # Time may only move forward through the layer's own timer.
        timer = layer.get_timer()
        assert timer is None or timer >= 0
