"""Edge security: who may talk to us at all, decided before a request reaches the UA core.
Sans-IO: every decision takes ``now`` (seconds) and returns a verdict; nothing sleeps.

Theory of operation
-------------------
A request from the network is screened in this order, and the first rule that applies wins:

1. **Scanner User-Agents** (friendly-scanner, sipvicious, sipcli, ...) are dropped: no answer
   tells a scanner that a SIP server lives here.
2. **Flood limit**: one token bucket per source IP; a request without a token is dropped.
   Trunk addresses and known sources are exempt (their rate is our call load). A source that
   presented wrong digest credentials ``failure_limit`` times within ``failure_window`` is
   dropped for ``ban_seconds`` (password guessing).
3. **Trunks by source address**: a source inside a trunk's CIDR allow-list is that trunk.
4. **REGISTER** goes to the registrar, which does its own digest check.
5. **Known sources**: a source the caller vouches for (a registered contact's flow, an existing
   dialog) is accepted.
6. **ACK and CANCEL** pass: they cannot be challenged (§22.1) and the layers below drop or 481
   them when they match nothing.
7. **Digest users**: when digest identities exist (user accounts or trunks authenticated by
   digest), a request is challenged; the UA verifies the answer and accepts on success.
8. Anything else gets **403 Forbidden** without detail.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from .message import Request

#: Lower-case substrings of User-Agent values sent by SIP scanners and war-diallers.
SCANNER_USER_AGENTS = (
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "vaxsipuseragent",
    "vaxipuseragent",
    "sundayddr",
    "iwar",
    "pplsip",
    "smap",
    "sipsak-scan",
    "voip-scan",
    "cpxmy",
)


class Verdict(enum.Enum):
    ACCEPT = "accept"
    CHALLENGE = "challenge"  # answer 401/407 with a digest challenge
    FORBID = "forbid"  # answer 403 without detail
    DROP = "drop"  # no answer at all


@dataclass(frozen=True)
class Trunk:
    """A PSTN trunk or peer: recognised by source network and/or by a digest user name."""

    name: str
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    digest_user: str | None = None

    @classmethod
    def from_cidrs(cls, name: str, cidrs: Iterable[str], digest_user: str | None = None) -> Trunk:
        return cls(name, tuple(ipaddress.ip_network(c, strict=False) for c in cidrs), digest_user)

    def contains(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    trunk: Trunk | None = None
    why: str = ""  # for our logs only, never sent


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class EdgePolicy:
    trunks: list[Trunk] = field(default_factory=list)
    #: Requests per second per source IP, and the burst allowed above it.
    flood_rate: float = 50.0
    flood_burst: float = 200.0
    #: Challenge unknown sources (True when there are digest users or digest trunks).
    digest_enabled: bool = True
    max_tracked_sources: int = 10000
    #: Wrong digest credentials from one IP this many times within failure_window seconds...
    failure_limit: int = 10
    failure_window: float = 60.0
    #: ... and every request from it is dropped for this long (password guessing).
    ban_seconds: float = 300.0
    _buckets: dict[str, TokenBucket] = field(default_factory=dict, repr=False)
    _failures: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _banned_until: dict[str, float] = field(default_factory=dict, repr=False)
    _trunk_cache: dict[str, Trunk | None] = field(default_factory=dict, repr=False)

    def screen(
        self, request: Request, source_ip: str, now: float, *, known_source: bool = False
    ) -> Decision:
        """Rules 1-8 in one call."""
        dropped = self.admit(request, source_ip, now, known_source=known_source)
        if dropped is not None:
            return dropped
        return self.classify(request, source_ip, known_source=known_source)

    def admit(
        self, request: Request, source_ip: str, now: float, *, known_source: bool = False
    ) -> Decision | None:
        """Rules 1-2, before any transaction exists: a DROP decision, or None to go on.

        Trunk addresses and known sources (a registered Jigasi with many calls) are not
        flood-limited: their rate is the call load we are here to carry."""
        user_agent = (request.headers.get("User-Agent") or "").lower()
        if user_agent and any(s in user_agent for s in SCANNER_USER_AGENTS):
            return Decision(Verdict.DROP, why=f"scanner user-agent {user_agent!r}")
        if known_source or self.trunk_for_address(source_ip) is not None:
            return None
        banned_until = self._banned_until.get(source_ip)
        if banned_until is not None:
            if now < banned_until:
                return Decision(Verdict.DROP, why="banned after failed authentication")
            del self._banned_until[source_ip]
        if not self._take_token(source_ip, now):
            return Decision(Verdict.DROP, why="flood limit")
        return None

    def classify(self, request: Request, source_ip: str, *, known_source: bool = False) -> Decision:
        """Rules 3-8, for a new request outside any dialog."""
        trunk = self.trunk_for_address(source_ip)
        if trunk is not None:
            return Decision(Verdict.ACCEPT, trunk, why=f"source in trunk {trunk.name}")
        if request.method == "REGISTER":
            return Decision(Verdict.ACCEPT, why="registrar checks digest")
        if known_source:
            return Decision(Verdict.ACCEPT, why="known source")
        if request.method in ("ACK", "CANCEL"):
            return Decision(Verdict.ACCEPT, why="cannot be challenged")
        if self.digest_enabled:
            return Decision(Verdict.CHALLENGE, why="unknown source, digest possible")
        return Decision(Verdict.FORBID, why="unknown source")

    def auth_failed(self, source_ip: str, now: float) -> bool:
        """Count wrong credentials from ``source_ip``; True when that got it banned."""
        recent = [t for t in self._failures.get(source_ip, []) if now - t < self.failure_window]
        recent.append(now)
        if len(recent) >= self.failure_limit:
            self._failures.pop(source_ip, None)
            self._banned_until[source_ip] = now + self.ban_seconds
            if len(self._banned_until) > self.max_tracked_sources:
                self._banned_until = {ip: t for ip, t in self._banned_until.items() if t > now}
            return True
        self._failures[source_ip] = recent
        if len(self._failures) > self.max_tracked_sources:
            self._failures.clear()
        return False

    def set_trunks(self, trunks: Iterable[Trunk]) -> None:
        """Replace the trunk list (configuration reload); use this rather than mutating it."""
        self.trunks = list(trunks)
        self._trunk_cache.clear()

    def trunk_for_address(self, source_ip: str) -> Trunk | None:
        cache = self._trunk_cache
        if source_ip in cache:
            return cache[source_ip]
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return None
        found = next((t for t in self.trunks if t.contains(address)), None)
        if len(cache) >= self.max_tracked_sources:
            cache.clear()
        cache[source_ip] = found
        return found

    def trunk_for_digest_user(self, username: str) -> Trunk | None:
        for trunk in self.trunks:
            if trunk.digest_user == username:
                return trunk
        return None

    def _take_token(self, source_ip: str, now: float) -> bool:
        bucket = self._buckets.get(source_ip)
        if bucket is None:
            if len(self._buckets) >= self.max_tracked_sources:
                self._prune(now)
            bucket = self._buckets[source_ip] = TokenBucket(self.flood_rate, self.flood_burst, now)
        return bucket.take(now)

    def _prune(self, now: float) -> None:
        # Forget sources whose bucket has refilled: they cost nothing to recreate.
        full_after = self.flood_burst / self.flood_rate if self.flood_rate else 0.0
        stale = [ip for ip, b in self._buckets.items() if now - b.updated >= full_after]
        for ip in stale:
            del self._buckets[ip]
        if len(self._buckets) >= self.max_tracked_sources:
            self._buckets.clear()  # under a spoofed-source flood, memory matters more
