"""Free ports on 127.0.0.1.

SIP listens on UDP and TCP at the same number (RFC 3261 §18), and baresip also opens a TLS
listener at port + 1, so a port is only handed out when the whole block is free on both
protocols. Ports come from a per-process counter in a high range, so parallel peers within one
test never race each other for the same number.
"""

from __future__ import annotations

import itertools
import os
import socket

LOOPBACK = "127.0.0.1"

# One slice of the ephemeral-free range per process, so two pytest workers do not collide.
_BASE = 20000 + (os.getpid() % 200) * 100
_counter = itertools.count()


def _is_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_port(span: int = 1) -> int:
    """A port P such that P .. P+span-1 are free on UDP and TCP at 127.0.0.1."""
    for _ in range(2000):
        port = _BASE + (next(_counter) * 4) % 20000
        if all(_is_free(port + i) for i in range(span)):
            return port
    raise RuntimeError("no free port block on 127.0.0.1")
