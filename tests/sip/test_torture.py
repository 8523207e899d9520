"""RFC 4475 (SIP torture test messages): every message of §3, byte-exact, in tests/sip/torture/.

Valid messages must parse to the right values; invalid ones must raise SipParseError with the
status the RFC asks for; nothing may raise anything else. §3.3 messages are well-formed at the
parser level except where the RFC says a 400 is due (insuf, multi01, mcl01); the 416/420/415/...
answers of §3.3 are decisions of the layers above the parser.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dialbridge.sip.message import (
    KeepAlive,
    Request,
    Response,
    SipParseError,
    SipUri,
    StreamFramer,
    make_response,
    parse_message,
)

TORTURE = Path(__file__).parent / "torture"

# (file stem, RFC 4475 section, title, expected): expected is "valid" or the status to answer.
CASES = [
    ("wsinv", "3.1.1.1", "A Short Tortuous INVITE", "valid"),
    ("intmeth", "3.1.1.2", "Wide Range of Valid Characters", "valid"),
    ("esc01", "3.1.1.3", "Valid Use of the % Escaping Mechanism", "valid"),
    ("escnull", "3.1.1.4", "Escaped Nulls in URIs", "valid"),
    ("esc02", "3.1.1.5", "Use of % When It Is Not an Escape", "valid"),
    ("lwsdisp", "3.1.1.6", "Message with No LWS between Display Name and <", "valid"),
    ("longreq", "3.1.1.7", "Long Values in Header Fields", "valid"),
    ("dblreq", "3.1.1.8", "Extra Trailing Octets in a UDP Datagram", "valid"),
    ("semiuri", "3.1.1.9", "Semicolon-Separated Parameters in URI User Part", "valid"),
    ("transports", "3.1.1.10", "Varied and Unknown Transport Types", "valid"),
    ("mpart01", "3.1.1.11", "Multipart MIME Message", "valid"),
    ("unreason", "3.1.1.12", "Unusual Reason Phrase", "valid"),
    ("noreason", "3.1.1.13", "Empty Reason Phrase", "valid"),
    ("badinv01", "3.1.2.1", "Extraneous Header Field Separators", 400),
    ("clerr", "3.1.2.2", "Content Length Larger Than Message", 400),
    ("ncl", "3.1.2.3", "Negative Content-Length", 400),
    ("scalar02", "3.1.2.4", "Request Scalar Fields with Overlarge Values", 400),
    ("scalarlg", "3.1.2.5", "Response Scalar Fields with Overlarge Values", 400),
    ("quotbal", "3.1.2.6", "Unterminated Quoted String in Display Name", 400),
    ("ltgtruri", "3.1.2.7", "<> Enclosing Request-URI", 400),
    ("lwsruri", "3.1.2.8", "Malformed SIP Request-URI (embedded LWS)", 400),
    ("lwsstart", "3.1.2.9", "Multiple SP Separating Request-Line Elements", 400),
    ("trws", "3.1.2.10", "SP Characters at End of Request-Line", 400),
    ("escruri", "3.1.2.11", "Escaped Headers in SIP Request-URI", 400),
    ("baddate", "3.1.2.12", "Invalid Time Zone in Date Header Field", 400),
    ("regbadct", "3.1.2.13", "Failure to Enclose name-addr URI in <>", 400),
    ("badaspec", "3.1.2.14", "Spaces within addr-spec", 400),
    ("baddn", "3.1.2.15", "Non-token Characters in Display Name", 400),
    ("badvers", "3.1.2.16", "Unknown Protocol Version", 505),
    ("mismatch01", "3.1.2.17", "Start Line and CSeq Method Mismatch", 400),
    ("mismatch02", "3.1.2.18", "Unknown Method with CSeq Method Mismatch", 400),
    ("bigcode", "3.1.2.19", "Overlarge Response Code", 400),
    ("badbranch", "3.2.1", "Missing Transaction Identifier", "valid"),
    ("insuf", "3.3.1", "Missing Required Header Fields", 400),
    ("unkscm", "3.3.2", "Request-URI with Unknown Scheme", "valid"),
    ("novelsc", "3.3.3", "Request-URI with Known but Atypical Scheme", "valid"),
    ("unksm2", "3.3.4", "Unknown URI Schemes in Header Fields", "valid"),
    ("bext01", "3.3.5", "Proxy-Require and Require", "valid"),
    ("invut", "3.3.6", "Unknown Content-Type", "valid"),
    ("regaut01", "3.3.7", "Unknown Authorization Scheme", "valid"),
    ("multi01", "3.3.8", "Multiple Values in Single Value Required Fields", 400),
    ("mcl01", "3.3.9", "Multiple Content-Length Values", 400),
    ("bcast", "3.3.10", "200 OK Response with Broadcast Via Header Field Value", "valid"),
    ("zeromf", "3.3.11", "Max-Forwards of Zero", "valid"),
    ("cparam01", "3.3.12", "REGISTER with a Contact Header Parameter", "valid"),
    ("cparam02", "3.3.13", "REGISTER with a url-parameter", "valid"),
    ("regescrt", "3.3.14", "REGISTER with a URL Escaped Header", "valid"),
    ("sdp01", "3.3.15", "Unacceptable Accept Offering", "valid"),
    ("inv2543", "3.4.1", "INVITE with RFC 2543 Syntax", "valid"),
]


def load(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


def test_the_corpus_holds_every_rfc4475_message_and_nothing_else():
    assert len(CASES) == 49
    assert sorted(p.stem for p in TORTURE.glob("*.dat")) == sorted(name for name, *_ in CASES)


@pytest.mark.parametrize(("name", "section", "title", "expected"), CASES, ids=[c[0] for c in CASES])
def test_torture_message_gets_the_rfc_verdict(name, section, title, expected):
    data = load(name)
    if expected == "valid":
        message = parse_message(data)
        assert isinstance(message, Request | Response)
        # Serialising and parsing again keeps every header value and the body.
        again = parse_message(message.to_bytes())
        assert again.headers.items()[: len(message.headers)] == [
            (n, str(len(message.body)) if n == "Content-Length" else v)
            for n, v in message.headers.items()
        ]
        assert again.body == message.body
    else:
        with pytest.raises(SipParseError) as err:
            parse_message(data)
        assert err.value.status == expected, err.value.reason


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_torture_message_through_the_stream_framer_never_crashes(name):
    framer = StreamFramer()
    data = load(name)
    out = []
    for i in range(0, len(data), 7):
        out += framer.feed(data[i : i + 7])
    if name == "clerr":
        # RFC 4475 §3.1.2.2: on a stream the receiver can only wait for the missing octets.
        assert out == []
        return
    assert out, "a complete message must produce something"
    assert all(isinstance(x, Request | Response | SipParseError | KeepAlive) for x in out)


def test_wsinv_folding_whitespace_and_escapes_parse_to_the_right_values():
    msg = parse_message(load("wsinv"))
    assert msg.method == "INVITE"
    assert msg.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert SipUri.parse(msg.uri).params == {"unknownparam": None}
    assert msg.to_addr.uri.user == "vivekg" and msg.to_addr.tag == "1918181833n"
    assert msg.from_addr.display_name == 'J Rosenberg \\"'
    assert msg.from_addr.tag == "98asjd8"
    assert msg.headers.get("Max-Forwards") == "0068"
    assert msg.cseq == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = msg.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(msg.body) == 150


def test_intmeth_unusual_characters_are_kept():
    msg = parse_message(load("intmeth"))
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = SipUri.parse(msg.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert msg.to_addr.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.from_addr.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_addr.params["fromparam''~+*_!.-%"] == "работающий"
    assert msg.from_addr.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.vias[0].branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    # NUL, DEL and the UTF-8 octets survive a round trip.
    assert parse_message(msg.to_bytes()) == msg


def test_esc01_escapes_are_kept_as_sent():
    msg = parse_message(load("esc01"))
    assert SipUri.parse(msg.uri).user == "sips%3Auser%40example.com"
    assert msg.to_addr.uri.user == "%75se%72"
    assert msg.from_addr.uri.user == "I%20have%20spaces"
    assert msg.contacts[0].uri.params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    assert msg.headers.get("Content-Type") == "application/sdp"  # from compact "C"


def test_escnull_registers_two_distinct_contacts():
    msg = parse_message(load("escnull"))
    assert [c.uri.user for c in msg.contacts] == ["%00", "%00%00"]
    assert msg.to_addr.uri.user == "null-%00-null"


def test_esc02_percent_is_not_an_escape_outside_uris():
    msg = parse_message(load("esc02"))
    assert msg.method == "RE%47IST%45R"
    assert msg.to_addr.display_name == "%Z%45"
    assert [c.uri.user for c in msg.contacts] == ["alias1", "alias3"]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_display_name_without_space_before_angle_bracket():
    msg = parse_message(load("lwsdisp"))
    assert msg.from_addr.display_name == "caller"
    assert msg.from_addr.tag == "323"


def test_longreq_long_values_and_34_vias():
    msg = parse_message(load("longreq"))
    vias = msg.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[33].params["received"] == "192.0.2.5"
    assert vias[33].branch.endswith("branchvalue")
    assert msg.to_addr.uri.port == 6000
    assert len(msg.to_addr.uri.params) == 3
    assert msg.from_addr.tag.startswith("1298298") and msg.from_addr.tag.endswith("2424")
    assert msg.call_id.startswith("longreq.onereally")


def test_dblreq_trailing_octets_in_a_datagram_are_ignored():
    msg = parse_message(load("dblreq"))
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert b"INVITE" not in msg.to_bytes()


def test_semiuri_user_part_holds_semicolon_parameter():
    msg = parse_message(load("semiuri"))
    uri = SipUri.parse(msg.uri)
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com" and uri.params == {}
    assert msg.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports_unknown_transport_tokens_are_accepted():
    msg = parse_message(load("transports"))
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_body_is_framed_by_content_length():
    data = load("mpart01")
    msg = parse_message(data)
    assert len(msg.body) == 553
    assert b"\x00" in msg.body and b"\r\n\r\n" in msg.body
    assert msg.vias[0].port == 5070 and msg.vias[0].params["rport"] is None
    assert msg.headers.get("Date") == "Sat, 15 Oct 2005 04:44:56 GMT"
    # Over a stream the embedded CRLFCRLF must not cut the message either.
    framer = StreamFramer()
    out = framer.feed(data + data)
    assert [len(m.body) for m in out] == [553, 553]


def test_unreason_utf8_reason_phrase():
    msg = parse_message(load("unreason"))
    assert isinstance(msg, Response)
    assert msg.status == 200
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(msg.body) == 154


def test_noreason_empty_reason_phrase():
    msg = parse_message(load("noreason"))
    assert (msg.status, msg.reason) == (100, "")


def test_badbranch_magic_cookie_without_identifier_parses():
    msg = parse_message(load("badbranch"))
    assert msg.vias[0].branch == "z9hG4bK"


def test_unknown_schemes_parse_as_opaque_uris():
    unkscm = parse_message(load("unkscm"))
    assert unkscm.uri == "nobodyKnowsThisScheme:totallyopaquecontent"
    novelsc = parse_message(load("novelsc"))
    assert novelsc.uri == "soap.beep://192.0.2.103:3002"
    unksm2 = parse_message(load("unksm2"))
    assert unksm2.to_addr.uri.scheme == "isbn"
    assert unksm2.from_addr.uri.scheme == "http" and unksm2.from_addr.tag == "3234233"
    assert str(unksm2.contacts[0].uri) == "name:John_Smith"


def test_application_layer_messages_keep_the_values_the_ua_needs():
    bext01 = parse_message(load("bext01"))
    assert bext01.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    invut = parse_message(load("invut"))
    assert invut.headers.get("Content-Type") == "application/unknownformat"
    assert len(invut.body) == 40
    regaut01 = parse_message(load("regaut01"))
    assert regaut01.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    bcast = parse_message(load("bcast"))
    assert bcast.vias[1].host == "255.255.255.255"
    assert parse_message(load("zeromf")).headers.get("Max-Forwards") == "0"
    sdp01 = parse_message(load("sdp01"))
    assert sdp01.headers.get("Accept") == "text/nobodyKnowsThis"


def test_contact_parameter_versus_uri_parameter():
    cparam01 = parse_message(load("cparam01")).contacts[0]
    assert cparam01.params == {"unknownparam": None} and cparam01.uri.params == {}
    cparam02 = parse_message(load("cparam02")).contacts[0]
    assert cparam02.params == {} and cparam02.uri.params == {"unknownparam": None}


def test_regescrt_escaped_header_stays_in_the_contact_uri():
    contact = parse_message(load("regescrt")).contacts[0]
    assert contact.uri.headers == {"Route": "%3Csip:sip.example.com%3E"}


def test_inv2543_rfc2543_request_is_accepted():
    msg = parse_message(load("inv2543"))
    assert msg.vias[0].branch is None
    assert "Max-Forwards" not in msg.headers
    assert msg.to_addr.uri.params == {} and msg.to_addr.params == {"user": "phone"}
    assert msg.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")


def test_invalid_request_still_yields_enough_to_answer_400():
    with pytest.raises(SipParseError) as err:
        parse_message(load("mismatch01"))
    partial = err.value.message
    assert isinstance(partial, Request)
    response = make_response(partial, err.value.status)
    assert response.status == 400
    assert response.call_id == "mismatch01.dj0234sxdfl3"


def test_unsupported_version_is_505():
    with pytest.raises(SipParseError) as err:
        parse_message(load("badvers"))
    assert (err.value.status, err.value.reason) == (505, "Version Not Supported")
