"""Property tests: whatever we build serialises and parses back to the same thing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialbridge.sip.message import (
    Headers,
    KeepAlive,
    NameAddr,
    Request,
    Response,
    SipUri,
    StreamFramer,
    Via,
    parse_message,
)

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=12)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
# RFC 3261 §25.1: the top label starts with a letter ("0.0.0.256" is neither a hostname nor an
# IPv4 address, and the parser rightly refuses it).
toplabels = st.tuples(
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789", max_size=9),
).map("".join)
hostnames = st.tuples(st.lists(labels, max_size=3), toplabels).map(
    lambda t: ".".join([*t[0], t[1]])
)
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8).map(
    lambda g: ":".join(f"{x:x}" for x in g)
)
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.one_of(st.none(), st.integers(1, 65535))
# Values that are not tokens exercise quoting; CR, LF and NUL cannot be in a quoted-string.
free_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=20
)
param_values = st.one_of(st.none(), tokens, free_text.filter(lambda v: v.strip() == v and v))
header_params = st.dictionaries(tokens.map(str.lower), param_values, max_size=3)
uri_params = st.dictionaries(tokens.map(str.lower), st.one_of(st.none(), tokens), max_size=3)
user_alphabet = TOKEN_ALPHABET.replace("%", "") + "&=+$,;?/"

sip_uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.one_of(st.none(), st.text(user_alphabet, min_size=1, max_size=12)),
    host=hosts,
    port=ports,
    params=uri_params,
)
display_names = st.one_of(st.none(), free_text)
name_addrs = st.builds(NameAddr, uri=sip_uris, display_name=display_names, params=header_params)
vias = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]),
    host=hosts,
    port=ports,
    params=st.fixed_dictionaries(
        {"branch": tokens.map(lambda t: "z9hG4bK" + t)},
        optional={"rport": st.one_of(st.none(), st.integers(1, 65535).map(str)), "received": ipv4},
    ),
)
extension_values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"), max_size=30
).map(str.strip)


@st.composite
def messages(draw) -> Request | Response:
    headers = Headers()
    for via in draw(st.lists(vias, min_size=1, max_size=3)):
        headers.add("Via", str(via))
    headers.add("From", str(draw(name_addrs)))
    headers.add("To", str(draw(name_addrs)))
    headers.add("Call-ID", draw(tokens) + "@" + draw(hostnames))
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "INFO", "OPTIONS"]) | tokens)
    headers.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    for contact in draw(st.lists(name_addrs, max_size=2)):
        headers.add("Contact", str(contact))
    for name, value in draw(st.lists(st.tuples(tokens, extension_values), max_size=3)):
        headers.add("X-" + name, value)
    body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        return Request(method, str(draw(sip_uris)), headers, body)
    status = draw(st.integers(100, 699))
    return Response(status, draw(extension_values), headers, body)


def _with_length(message: Request | Response) -> list[tuple[str, str]]:
    return [*message.headers.items(), ("Content-Length", str(len(message.body)))]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_parse_of_serialised_message_gives_the_same_message(message):
    parsed = parse_message(message.to_bytes())
    assert type(parsed) is type(message)
    assert parsed.headers.items() == _with_length(message)
    assert parsed.body == message.body
    if isinstance(message, Request):
        assert (parsed.method, parsed.uri) == (message.method, message.uri)
    else:
        assert (parsed.status, parsed.reason) == (message.status, message.reason)
    # Serialising again is stable.
    assert parse_message(parsed.to_bytes()) == parsed


@settings(max_examples=300)
@given(name_addrs)
def test_name_addr_round_trips_through_its_text(addr):
    assert NameAddr.parse(str(addr)) == addr


@settings(max_examples=300)
@given(vias)
def test_via_round_trips_through_its_text(via):
    assert Via.parse(str(via)) == via


@settings(max_examples=300)
@given(sip_uris)
def test_sip_uri_round_trips_through_its_text(uri):
    parsed = SipUri.parse(str(uri))
    assert parsed == uri
    assert parsed.equivalent(uri) and uri.equivalent(parsed)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=4), st.data())
def test_stream_framer_gives_the_same_messages_however_the_stream_is_cut(batch, data):
    stream = b"".join(m.to_bytes() for m in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    framer = StreamFramer()
    out = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out.extend(framer.feed(stream[start:cut]))
        start = cut
    out = [x for x in out if not isinstance(x, KeepAlive)]
    assert [x.to_bytes() for x in out] == [m.to_bytes() for m in batch]
