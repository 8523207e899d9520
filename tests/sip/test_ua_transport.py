"""The transport edge never crashes on bytes from the network, and answers what it can."""

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from dialbridge.sip.flow import Flow
from dialbridge.sip.message import Request, parse_message
from dialbridge.sip.transport import SipTransports, _StreamConnection, _UdpEndpoint

VALID = (
    b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKa;rport\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class Collector:
    def __init__(self):
        self.messages = []
        self.closed = []

    def message_received(self, message, flow):
        self.messages.append((message, flow))

    def flow_closed(self, flow):
        self.closed.append(flow)


class FakeStream:
    def __init__(self):
        self.written = bytearray()
        self.closing = False

    def get_extra_info(self, name):
        return ("127.0.0.1", 40000) if name == "peername" else None

    def write(self, data):
        self.written += data

    def close(self):
        self.closing = True

    def is_closing(self):
        return self.closing


class FakeDatagram(FakeStream):
    def __init__(self):
        super().__init__()
        self.sent = []

    def sendto(self, data, addr):
        self.sent.append((data, addr))


def stream(user):
    transports = SipTransports(user)
    connection = _StreamConnection(transports, "tcp", ("127.0.0.1", 5060))
    fake = FakeStream()
    connection.connection_made(fake)
    return transports, connection, fake


chunks = st.lists(
    st.one_of(
        st.binary(max_size=200),
        st.sampled_from(
            [
                VALID,
                b"\r\n\r\n",
                b"\r\n",
                VALID[:40],
                VALID[40:],
                b"Content-Length: 99999999\r\n\r\n",
            ]
        ),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(chunks)
def test_stream_connection_survives_any_bytes(pieces):
    async def scenario():
        user = Collector()
        _, connection, fake = stream(user)
        for piece in pieces:
            connection.data_received(piece)
        for message, flow in user.messages:
            assert isinstance(flow, Flow) and flow.connection is connection
            message.to_bytes()
        return fake

    asyncio.run(scenario())


async def test_stream_pings_are_ponged_and_messages_delivered_across_chunks():
    user = Collector()
    _, connection, fake = stream(user)
    data = b"\r\n\r\n" + VALID + VALID
    for i in range(0, len(data), 7):
        connection.data_received(data[i : i + 7])
    assert bytes(fake.written) == b"\r\n"
    assert [type(m) for m, _ in user.messages] == [Request, Request]


async def test_malformed_message_on_stream_gets_400_on_the_same_connection():
    user = Collector()
    _, connection, fake = stream(user)
    connection.data_received(VALID.replace(b"Call-ID: c\r\n", b""))
    assert bytes(fake.written).startswith(b"SIP/2.0 400 ")
    assert user.messages == []
    assert not fake.closing  # framing was fine: the connection stays


async def test_broken_framing_closes_the_connection():
    user = Collector()
    _, connection, fake = stream(user)
    connection.data_received(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\n\r\n")
    assert fake.closing  # no Content-Length on a stream (§18.3)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_udp_endpoint_survives_any_datagram(data):
    async def scenario():
        user = Collector()
        transports = SipTransports(user)
        endpoint = _UdpEndpoint(transports, ("127.0.0.1", 5060))
        fake = FakeDatagram()
        endpoint.connection_made(fake)
        transports._udp[endpoint.local] = endpoint
        endpoint.datagram_received(data, ("127.0.0.1", 40000))
        endpoint.datagram_received(VALID.replace(b"TCP", b"UDP"), ("127.0.0.1", 40000))
        assert isinstance(user.messages[-1][0], Request)
        for reply, _ in fake.sent:
            assert reply.startswith(b"SIP/2.0 ")
            parse_message(reply) if b"Call-ID" in reply else None

    asyncio.run(scenario())


async def _listening(**kw):
    user = Collector()
    transports = SipTransports(user, **kw)
    host, port = await transports.listen("tcp", "127.0.0.1", 0)
    return user, transports, port


async def test_silent_tcp_connection_is_closed_but_a_talking_one_stays():
    user, transports, port = await _listening(first_message_timeout=0.1)
    try:
        _, silent_writer = await asyncio.open_connection("127.0.0.1", port)
        silent_reader = _
        talker_reader, talker_writer = await asyncio.open_connection("127.0.0.1", port)
        talker_writer.write(VALID)
        await talker_writer.drain()
        assert await asyncio.wait_for(silent_reader.read(), 2.0) == b""  # closed by us
        await asyncio.sleep(0.2)
        assert not talker_reader.at_eof()
        assert len(user.messages) == 1
        silent_writer.close()
        talker_writer.close()
    finally:
        await transports.close()


async def test_accepted_connections_per_ip_are_capped():
    _, transports, port = await _listening(max_connections_per_ip=2)
    try:
        opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        reader, _ = opened[2]
        assert await asyncio.wait_for(reader.read(), 2.0) == b""
        assert not opened[0][0].at_eof()
        for _, writer in opened:
            writer.close()
    finally:
        await transports.close()
