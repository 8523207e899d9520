"""Behaviour of the SIP message parser and serialiser (RFC 3261 §7, §20, §25)."""

import pytest

from dialbridge.sip.message import (
    Headers,
    KeepAlive,
    NameAddr,
    Request,
    Response,
    SipParseError,
    SipUri,
    StreamFramer,
    Via,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_request_fields_are_parsed():
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri == "sip:bob@biloxi.example.com"
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.cseq == (314159, "INVITE")
    assert msg.from_addr.tag == "1928301774"
    assert msg.from_addr.display_name == "Alice"
    assert msg.to_addr.tag is None
    assert msg.vias[0].branch == "z9hG4bK776asdhds"
    assert msg.vias[0].params["rport"] is None
    assert msg.contacts[0].uri.host == "pc33.atlanta.example.com"
    assert msg.body == b"v=0\n"


def test_compact_forms_expand_to_canonical_names():
    data = INVITE.replace(b"Via:", b"v:").replace(b"Call-ID:", b"i:").replace(b"From:", b"f:")
    msg = parse_message(data.replace(b"To:", b"t:").replace(b"Contact:", b"m:"))
    names = [name for name, _ in msg.headers.items()]
    assert names[:6] == ["Via", "Max-Forwards", "To", "From", "Call-ID", "CSeq"]
    assert "Contact" in names


def test_serialise_writes_content_length_from_body():
    msg = parse_message(INVITE)
    msg.body = b"hello world"
    again = parse_message(msg.to_bytes())
    assert again.headers.get("Content-Length") == "11"
    assert again.body == b"hello world"


def test_make_response_copies_dialog_headers_and_adds_to_tag():
    msg = parse_message(INVITE)
    resp = make_response(msg, 200, to_tag="abc")
    assert isinstance(resp, Response)
    assert resp.reason == "OK"
    assert resp.to_addr.tag == "abc"
    assert resp.headers.get_all("Via") == msg.headers.get_all("Via")
    assert resp.cseq == msg.cseq and resp.call_id == msg.call_id


def test_stream_framer_cuts_messages_and_reports_keepalives():
    framer = StreamFramer()
    stream = b"\r\n\r\n" + INVITE + INVITE
    out = framer.feed(stream[:50]) + framer.feed(stream[50:])
    assert out[0] == KeepAlive(ping=True)
    assert [type(x) for x in out[1:]] == [Request, Request]


def test_missing_call_id_is_a_400():
    with pytest.raises(SipParseError) as err:
        parse_message(INVITE.replace(b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", b""))
    assert err.value.status == 400
    assert err.value.message is not None  # still enough to build the 400


def test_identifiers_are_random_and_branch_has_magic_cookie():
    assert new_branch().startswith("z9hG4bK")
    assert new_branch() != new_branch()
    assert new_tag() != new_tag()
    assert new_call_id() != new_call_id()


def test_typed_views_round_trip_through_str():
    uri = SipUri.parse("sip:alice:pw@[2001:db8::1]:5070;transport=tcp;lr?subject=x")
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "pw", "2001:db8::1", 5070)
    assert SipUri.parse(str(uri)) == uri
    addr = NameAddr.parse('"A \\"B\\"" <sip:a@b>;tag=x')
    assert addr.display_name == 'A "B"'
    assert NameAddr.parse(str(addr)) == addr
    via = Via.parse("SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bKabc;received=10.0.0.2;rport=5062")
    assert Via.parse(str(via)) == via
    assert Headers([("v", "x")]).items() == [("Via", "x")]
