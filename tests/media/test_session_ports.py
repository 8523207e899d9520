"""RTP port allocation: even ports from the configured range, RTCP on +1, reuse last."""

from __future__ import annotations

import socket

import pytest

from dialbridge.media.ports import PortAllocator, PortsExhausted, bind_rtp_sockets


def test_ports_are_even_in_range_and_leave_room_for_rtcp():
    alloc = PortAllocator(10001, 10009)
    ports = [alloc.allocate() for _ in range(4)]
    assert ports == [10002, 10004, 10006, 10008]
    with pytest.raises(PortsExhausted):
        alloc.allocate()


def test_a_released_port_is_the_last_to_be_reused():
    alloc = PortAllocator(20000, 20007)
    first = alloc.allocate()
    alloc.release(first)
    assert [alloc.allocate() for _ in range(3)] == [20002, 20004, 20006]
    assert alloc.allocate() == first


def test_rtcp_mux_may_use_the_last_port_of_the_range():
    assert PortAllocator(30000, 30002, rtcp_mux=True).capacity == 2
    assert PortAllocator(30000, 30002).capacity == 1


def test_binding_skips_ports_held_by_another_program():
    alloc = PortAllocator(35000, 35011)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", 35001))  # the RTCP port of the first pair
    try:
        port, rtp, rtcp = bind_rtp_sockets(alloc, "127.0.0.1")
        assert port == 35002 and rtp.getsockname()[1] == 35002
        assert rtcp is not None and rtcp.getsockname()[1] == 35003
        assert 35000 not in alloc._used
        rtp.close()
        rtcp.close()
    finally:
        squatter.close()
