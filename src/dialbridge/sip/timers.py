"""SIP timer values (RFC 3261 §17.1.1.1, Table 4; RFC 6026 §8.11 for Timers L and M).

All values are seconds as floats. The sans-IO cores read them from one :class:`TimerSettings`
object, so a test can shrink T1 to make a whole scenario run in a few fake milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimerSettings:
    #: RTT estimate (Table 4: 500 ms default).
    t1: float = 0.5
    #: Maximum retransmit interval for non-INVITE requests and INVITE responses.
    t2: float = 4.0
    #: Maximum time a message remains in the network.
    t4: float = 5.0
    #: §17.2.1: send 100 Trying if the TU has not answered an INVITE within 200 ms.
    #: 0 sends it at once.
    trying_delay: float = 0.2

    # Durations named after the RFC's timers. "reliable" means TCP/TLS (§17.1.1.2: the
    # retransmission timers are not started and the wait timers are zero).

    def timer_a(self) -> float:  # INVITE request retransmit, first interval
        return self.t1

    def timer_b(self) -> float:  # INVITE transaction timeout
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        # Wait for response retransmits: "at least 32 s"; 64*T1 is exactly that at the default T1
        # and scales down with it in tests.
        return 0.0 if reliable else 64 * self.t1

    def timer_e(self) -> float:  # non-INVITE request retransmit, first interval
        return self.t1

    def timer_f(self) -> float:  # non-INVITE transaction timeout
        return 64 * self.t1

    def timer_g(self) -> float:  # INVITE response retransmit, first interval
        return self.t1

    def timer_h(self) -> float:  # wait time for ACK receipt
        return 64 * self.t1

    def timer_i(self, reliable: bool) -> float:  # wait for ACK retransmits
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:  # wait for non-INVITE request retransmits
        return 0.0 if reliable else 64 * self.t1

    def timer_k(self, reliable: bool) -> float:  # wait for non-INVITE response retransmits
        return 0.0 if reliable else self.t4

    def timer_l(self) -> float:  # RFC 6026: wait for INVITE retransmits after a 2xx
        return 64 * self.t1

    def timer_m(self) -> float:  # RFC 6026: wait for 2xx retransmits
        return 64 * self.t1


DEFAULT_TIMERS = TimerSettings()
