"""RTP port allocation from a configured range.

RFC 3550 §11: RTP uses an even port and RTCP the next odd one. With rtcp-mux (RFC 5761) one
port carries both; Jigasi's SIP leg never uses rtcp-mux (jigasi-protocol.md §1.5), so pairs
are the default. The allocator is plain bookkeeping (sans-IO); :func:`bind_rtp_sockets` tries
allocated pairs until the operating system accepts both binds, so ports held by other
programs are skipped, a bounded number of times.
"""

from __future__ import annotations

import socket

__all__ = ["PortAllocator", "PortsExhausted", "bind_rtp_sockets"]


class PortsExhausted(RuntimeError):
    """No free port pair is left in the configured range (a local capacity error)."""


class PortAllocator:
    """Hands out even RTP ports from ``[low, high]``, round-robin, so a port just released is
    the last to be reused (late packets of an old call do not land in a new one)."""

    def __init__(self, low: int = 10000, high: int = 20000, *, rtcp_mux: bool = False) -> None:
        low += low & 1  # first even port
        if high - low < 1:
            raise ValueError(f"port range {low}-{high} holds no RTP/RTCP pair")
        self.low = low
        self.high = high if rtcp_mux else high - 1  # the RTCP port must stay in range
        self.rtcp_mux = rtcp_mux
        self._next = low
        self._used: set[int] = set()

    @property
    def capacity(self) -> int:
        return (self.high - self.low) // 2 + 1

    @property
    def in_use(self) -> int:
        return len(self._used)

    def allocate(self) -> int:
        """An even RTP port not handed out yet; RTCP is that port + 1 unless rtcp-mux."""
        for _ in range(self.capacity):
            port = self._next
            self._next = port + 2 if port + 2 <= self.high else self.low
            if port not in self._used:
                self._used.add(port)
                return port
        raise PortsExhausted(f"all {self.capacity} RTP ports in {self.low}-{self.high} are in use")

    def release(self, port: int) -> None:
        self._used.discard(port)


def bind_rtp_sockets(
    allocator: PortAllocator, host: str = "127.0.0.1", attempts: int = 64
) -> tuple[int, socket.socket, socket.socket | None]:
    """Bind non-blocking UDP sockets for RTP (and RTCP on +1). Returns (port, rtp, rtcp)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last_error: OSError | None = None
    for _ in range(attempts):
        port = allocator.allocate()
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        rtcp = None
        try:
            rtp.bind((host, port))
            if not allocator.rtcp_mux:
                rtcp = socket.socket(family, socket.SOCK_DGRAM)
                rtcp.bind((host, port + 1))
        except OSError as exc:  # taken by another program: skip this pair for now
            last_error = exc
            rtp.close()
            if rtcp is not None:
                rtcp.close()
            allocator.release(port)
            continue
        rtp.setblocking(False)
        if rtcp is not None:
            rtcp.setblocking(False)
        return port, rtp, rtcp
    raise PortsExhausted(f"no bindable RTP port pair after {attempts} attempts: {last_error}")
