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
    unescape,
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


def test_repeated_agreeing_content_length_is_accepted_and_written_once():
    # Found by fuzz/fuzz_message.py: two Content-Length headers with the same value parse
    # (RFC 4475's mcl01 is the disagreeing case, refused); the message goes out with one.
    raw = (
        b"SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398\r\n"
        b"Call-ID: a@b\r\nCSeq: 35 INVITE\r\nFrom: <sip:u@e.edu>;tag=1\r\n"
        b"Content-Length: 0\r\nTo: <sip:u@e.edu>\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw)
    out = msg.to_bytes()
    assert out.count(b"Content-Length") == 1
    names = [n for n, _ in parse_message(out).headers.items()]
    assert names == ["Via", "Call-ID", "CSeq", "From", "Content-Length", "To"]


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


# --- headers -----------------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_keep_order():
    headers = Headers()
    headers.add("via", "SIP/2.0/UDP a;branch=z9hG4bK1")
    headers.add("X-Custom", "1")
    headers.add("V", "SIP/2.0/UDP b;branch=z9hG4bK2")
    assert "VIA" in headers and "x-custom" in headers and "Route" not in headers
    assert headers.get_all("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/UDP b;branch=z9hG4bK2",
    ]
    assert [name for name, _ in headers.items()] == ["Via", "X-Custom", "Via"]
    headers.set("x-custom", "2")
    assert headers.items()[1] == ("X-Custom", "2")
    headers.remove("VIA")
    assert headers.items() == [("X-Custom", "2")]
    copy = headers.copy()
    copy.add("Subject", "s")
    assert "Subject" not in headers and copy.get("subject") == "s"
    assert headers.get("Missing", "dflt") == "dflt"


def test_list_headers_split_on_commas_outside_quotes_and_brackets():
    headers = Headers(
        [("m", '"Doe, John" <sip:j@x;a=1,2>;q=0.5, <sip:k@y>'), ("Route", "<sip:a;lr>,<sip:b;lr>")]
    )
    assert headers.get_all("Contact") == ['"Doe, John" <sip:j@x;a=1,2>;q=0.5', "<sip:k@y>"]
    assert headers.get("Contact") == '"Doe, John" <sip:j@x;a=1,2>;q=0.5'
    assert headers.get_all("Route") == ["<sip:a;lr>", "<sip:b;lr>"]
    # Commas inside a digest challenge separate parameters, not values.
    challenge = 'Digest realm="a", nonce="b"'
    assert Headers([("WWW-Authenticate", challenge)]).get_all("WWW-Authenticate") == [challenge]


def test_every_compact_form_expands():
    compact = {
        "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "e": "Content-Encoding",
        "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
        "l": "Content-Length", "m": "Contact", "o": "Event", "r": "Refer-To", "s": "Subject",
        "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires", "y": "Identity",
    }  # fmt: skip
    for short, long in compact.items():
        assert Headers([(short.upper(), "x")]).items() == [(long, "x")]
        assert Headers([(short, "x")]).get(long) == "x"


def test_contact_star_has_no_addresses():
    msg = parse_message(INVITE.replace(b"Contact: <sip:alice@pc33.atlanta.example.com>", b"m: *"))
    assert msg.headers.get("Contact") == "*"
    assert msg.contacts == []


def test_folded_header_lines_are_unfolded():
    msg = parse_message(
        INVITE.replace(b"Subject", b"X").replace(b"Max-Forwards: 70", b"Max-Forwards:\r\n   70")
    )
    assert msg.headers.get("Max-Forwards") == "70"


def test_bare_lf_line_ends_are_tolerated():
    msg = parse_message(INVITE.replace(b"\r\n", b"\n"))
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.body == b"v=0\n"


def test_leading_crlf_before_start_line_is_ignored():
    assert parse_message(b"\r\n\r\n" + INVITE).method == "INVITE"


# --- limits and error codes --------------------------------------------------------------------


def test_message_over_the_size_limit_is_513():
    with pytest.raises(SipParseError) as err:
        parse_message(INVITE, max_size=100)
    assert err.value.status == 513


def test_too_many_header_lines_is_400():
    extra = b"".join(b"X-H%d: v\r\n" % i for i in range(300))
    with pytest.raises(SipParseError) as err:
        parse_message(INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + extra))
    assert (err.value.status, err.value.reason) == (400, "Too many header fields")


def test_overlong_header_line_is_400():
    with pytest.raises(SipParseError) as err:
        parse_message(
            INVITE.replace(b"Max-Forwards: 70", b"X-Long: " + b"a" * 9000 + b"\r\nMax-Forwards: 70")
        )
    assert err.value.reason == "Header field too long"


def test_overlong_request_uri_is_414():
    uri = b"sip:" + b"a" * 5000 + b"@example.com"
    with pytest.raises(SipParseError) as err:
        parse_message(INVITE.replace(b"sip:bob@biloxi.example.com SIP/2.0", uri + b" SIP/2.0"))
    assert err.value.status == 414


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia", "Version Not Supported"),
        (b"INVITE sip", b"INV ITE sip", "Malformed Request-Line"),
        (b"Max-Forwards: 70", b"Max-Forwards: 256", "Bad Max-Forwards"),
        (b"CSeq: 314159 INVITE", b"CSeq: 314159", "Bad CSeq"),
        (b"CSeq: 314159 INVITE", b"CSeq: 2147483648 INVITE", "CSeq number out of range"),
        (b"Content-Length: 4", b"Content-Length: 5", "Content-Length larger than body"),
        (b"Content-Length: 4", b"Content-Length: four", "Bad Content-Length"),
        (
            b"Max-Forwards: 70\r\n",
            b"Max-Forwards 70\r\n",
            "Malformed header line 'Max-Forwards 70'",
        ),
        (
            b"To: Bob <sip:bob@biloxi.example.com>",
            b"To: Bob <sip:bob@biloxi.example.com",
            "Unterminated <> in address",
        ),
        (b"branch=z9hG4bK776asdhds", b"branch=", "Empty value for parameter 'branch'"),
        (
            b"pc33.atlanta.example.com;branch",
            b"pc33.atlanta.example.com:99999;branch",
            "Port out of range in Via",
        ),
        (b"\r\n\r\nv=0", b"\r\nv=0", None),
    ],
)
def test_malformed_requests_raise_sip_parse_error_with_a_status(old, new, reason):
    data = INVITE.replace(old, new)
    assert data != INVITE
    with pytest.raises(SipParseError) as err:
        parse_message(data)
    assert err.value.status in (400, 505)
    if reason is not None:
        assert err.value.reason == reason


def test_datagram_without_content_length_takes_the_rest_as_body():
    msg = parse_message(INVITE.replace(b"Content-Length: 4\r\n", b""))
    assert msg.body == b"v=0\n"


def test_extra_octets_after_content_length_are_dropped():
    assert parse_message(INVITE + b"garbage").body == b"v=0\n"


def test_status_line_and_reason_phrase():
    resp = parse_message(make_response(parse_message(INVITE), 486, "Busy Here, really").to_bytes())
    assert (resp.status, resp.reason) == (486, "Busy Here, really")
    with pytest.raises(SipParseError):
        parse_message(b"SIP/2.0 99 Low\r\n" + INVITE.split(b"\r\n", 1)[1])
    with pytest.raises(SipParseError):
        parse_message(b"SIP/2.0 700 High\r\n" + INVITE.split(b"\r\n", 1)[1])


# --- make_response -----------------------------------------------------------------------------


def test_make_response_keeps_an_existing_to_tag_and_copies_timestamp_on_100():
    request = parse_message(
        INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:bob@b>;tag=old").replace(
            b"Max-Forwards: 70", b"Max-Forwards: 70\r\nTimestamp: 54"
        )
    )
    trying = make_response(request, 100, to_tag="new")
    assert trying.to_addr.tag == "old"
    assert trying.headers.get("Timestamp") == "54"
    assert "Timestamp" not in make_response(request, 180).headers
    ok = make_response(request, 200, headers=[("Contact", "<sip:me@h>")], body=b"x")
    assert ok.headers.get("Contact") == "<sip:me@h>" and ok.body == b"x"
    assert parse_message(ok.to_bytes()).headers.get("Content-Length") == "1"
    assert make_response(request, 499).reason == "Unknown"


# --- stream framing ----------------------------------------------------------------------------


def test_stream_message_split_byte_by_byte_is_reassembled():
    framer = StreamFramer()
    out = []
    for i in range(len(INVITE)):
        out += framer.feed(INVITE[i : i + 1])
    assert len(out) == 1 and out[0].body == b"v=0\n"


def test_stream_keepalive_ping_and_pong():
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [KeepAlive(ping=True)]
    assert framer.feed(b"\r\n") == [KeepAlive(ping=False)]
    assert framer.feed(b"\r\n\r\n\r\n\r\n") == [KeepAlive(ping=True), KeepAlive(ping=True)]


def test_stream_without_content_length_is_a_fatal_framing_error():
    framer = StreamFramer()
    out = framer.feed(INVITE.replace(b"Content-Length: 4\r\n", b""))
    assert len(out) == 1 and isinstance(out[0], SipParseError)
    assert framer.broken
    assert framer.feed(INVITE) == []  # the connection must be closed; input is ignored


def test_stream_header_section_larger_than_limit_is_fatal():
    framer = StreamFramer(max_size=1000)
    out = framer.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 300)
    assert len(out) == 1 and out[0].status == 513 and framer.broken


def test_stream_malformed_but_framed_message_does_not_break_the_stream():
    bad = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: x INVITE")
    out = StreamFramer().feed(bad + INVITE)
    assert isinstance(out[0], SipParseError) and isinstance(out[1], Request)


def test_stream_body_bytes_are_binary_safe():
    body = b"\x00\r\n\r\n\xff" * 10
    msg = parse_message(INVITE)
    msg.body = body
    out = StreamFramer().feed(msg.to_bytes() * 2)
    assert [m.body for m in out] == [body, body]


# --- typed views -------------------------------------------------------------------------------


def test_uri_with_escapes_parameters_and_headers():
    uri = SipUri.parse("sips:%61lice@Example.COM:5061;transport=TLS;lr;maddr=[::1]?subject=hi&x=y")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sips", "%61lice", "Example.COM", 5061)
    assert uri.params == {"transport": "TLS", "lr": None, "maddr": "[::1]"}
    assert uri.transport == "tls"
    assert uri.headers == {"subject": "hi", "x": "y"}
    assert SipUri.parse("tel:+15551234;phone-context=x").opaque == "+15551234;phone-context=x"
    for bad in ["sip:", "sip:a@", "sip:@b", "sip:a@b:x", "nocolon", "sip:a b@c", "sip:a@[::1"]:
        with pytest.raises(SipParseError):
            SipUri.parse(bad)


def test_name_addr_forms():
    assert NameAddr.parse("sip:a@b;tag=1").params == {"tag": "1"}
    assert NameAddr.parse("<sip:a@b;lr>;tag=1").uri.params == {"lr": None}
    assert NameAddr.parse("Alice Smith <sip:a@b>").display_name == "Alice Smith"
    assert str(NameAddr.parse('"A\\\\B" <sip:a@b>')) == '"A\\\\B" <sip:a@b>'
    assert NameAddr.parse('"" <sip:a@b>').display_name == ""
    for bad in ['"open <sip:a@b>', "Bad, Name <sip:a@b>", "< sip:a@b>", "sip:a@b?x=y", ""]:
        with pytest.raises(SipParseError):
            NameAddr.parse(bad)


def test_via_with_ipv6_received_and_rport():
    via = Via.parse(
        "SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKx;rport=5062;received=2001:db8::7"
    )
    assert (via.host, via.port, via.params["rport"]) == ("2001:db8::9", 5060, "5062")
    assert (
        str(via) == "SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKx;rport=5062;received=2001:db8::7"
    )
    for bad in ["SIP/2.0/UDP", "SIP/2.0 host", "SIP/1.0/UDP host", "SIP/2.0/UDP host;;"]:
        with pytest.raises(SipParseError):
            Via.parse(bad)


# --- URI comparison (RFC 3261 §19.1.4) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
    ],
)
def test_rfc3261_equivalent_uris(a, b):
    assert SipUri.parse(a).equivalent(SipUri.parse(b))
    assert SipUri.parse(b).equivalent(SipUri.parse(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:alice@a.com", "sips:alice@a.com"),
    ],
)
def test_rfc3261_non_equivalent_uris(a, b):
    assert not SipUri.parse(a).equivalent(SipUri.parse(b))


def test_unescape_decodes_utf8_octets_and_leaves_lone_percent():
    assert unescape("%61lice") == "alice"
    assert unescape("null-%00-null") == "null-\x00-null"
    assert unescape("%D0%BD%D0%BE") == "но"
    assert unescape("100%") == "100%"


def test_quoted_parameter_ending_in_escaped_quote_is_unterminated():
    assert NameAddr.parse('<sip:a@b>;x="a\\\\"').params == {"x": "a\\"}
    with pytest.raises(SipParseError):
        NameAddr.parse('<sip:a@b>;x="a\\\\\\"')
    with pytest.raises(SipParseError):
        NameAddr.parse('<sip:a@b>;x="a\\"')


def test_via_with_trailing_semicolon_is_malformed():
    with pytest.raises(SipParseError):
        Via.parse("SIP/2.0/UDP host;")


def test_typed_views_are_fresh_copies_so_mutating_one_does_not_leak():
    msg = parse_message(INVITE)
    first = msg.from_addr
    first.params["tag"] = "changed"
    first.uri.params["lr"] = None
    via = msg.vias[0]
    via.params["received"] = "1.2.3.4"
    again = msg.from_addr
    assert again.tag == "1928301774" and again.uri.params == {}
    assert "received" not in msg.vias[0].params
    assert parse_message(INVITE).from_addr.tag == "1928301774"
