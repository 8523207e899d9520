"""Location service (RFC 3261 §10.2, §10.3): address-of-record → contacts, each remembering the
flow its REGISTER came in on.

Theory of operation
-------------------
* A :class:`Binding` is plain data (strings and numbers) so that any :class:`BindingStore`
  can persist it. Expiry is wall-clock time (``time.time()`` seconds), because bindings outlive
  a restart.
* Live flows (TCP/TLS connections) exist only in memory. A binding refers to its flow by
  :attr:`Flow.key`; :meth:`LocationService.lookup` hands back the live flow when there is one.
  After a restart a UDP flow can be rebuilt from its key (same listening socket, same remote
  address); a TCP/TLS flow cannot, and the caller must connect anew.
* Persistence is behind the small :class:`BindingStore` protocol (``load``/``save``).
  :class:`JsonFileBindingStore` writes one JSON file atomically; a database-backed store can
  be plugged in from outside this package.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from .flow import Flow
from .message import SipParseError, SipUri


@dataclass
class Binding:
    aor: str  # canonical "sip:user@domain"
    contact: str  # the Contact URI as registered
    expires_at: float  # wall clock
    call_id: str
    cseq: int
    flow_key: str
    q: float = 1.0
    user_agent: str = ""
    #: Contact header parameters other than expires/q (e.g. +sip.instance, reg-id).
    contact_params: str = ""

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


@dataclass(frozen=True)
class Reachable:
    """A registered contact and how to reach it."""

    binding: Binding
    #: The flow to send on: the live connection or the UDP socket pair of the REGISTER. None for
    #: a TCP/TLS binding whose connection is gone (connect to ``binding.contact`` instead).
    flow: Flow | None

    @property
    def uri(self) -> str:
        return self.binding.contact


class BindingStore(Protocol):
    def load(self) -> list[Binding]: ...

    def save(self, bindings: list[Binding]) -> None: ...


class MemoryBindingStore:
    def __init__(self) -> None:
        self.saved: list[Binding] = []

    def load(self) -> list[Binding]:
        return [Binding(**asdict(b)) for b in self.saved]

    def save(self, bindings: list[Binding]) -> None:
        self.saved = [Binding(**asdict(b)) for b in bindings]


class JsonFileBindingStore:
    """Bindings as one JSON file, replaced atomically (write to a temporary file, rename)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> list[Binding]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []  # a damaged file loses the bindings; UAs re-register within minutes
        out = []
        for item in data.get("bindings", []):
            try:
                out.append(Binding(**item))
            except TypeError:
                continue
        return out

    def save(self, bindings: list[Binding]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"version": 1, "bindings": [asdict(b) for b in bindings]}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".bindings-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(payload)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def aor_of(uri: str | SipUri) -> str:
    """§10.3 step 5: the canonical address-of-record: scheme, user and lower-cased host."""
    parsed = SipUri.parse(uri) if isinstance(uri, str) else uri
    scheme = "sips" if parsed.scheme == "sips" else "sip"
    user = f"{parsed.user}@" if parsed.user else ""
    return f"{scheme}:{user}{parsed.host.lower()}"


class LocationService:
    def __init__(self, store: BindingStore | None = None) -> None:
        self.store: BindingStore = store if store is not None else MemoryBindingStore()
        self._bindings: dict[str, list[Binding]] = {}
        self._flows: dict[str, Flow] = {}
        #: Called with (aor, current bindings) after every REGISTER that changed something.
        self.on_update: Callable[[str, list[Binding]], None] | None = None
        for binding in self.store.load():
            self._bindings.setdefault(binding.aor, []).append(binding)
        self._flow_keys: set[str] = set()
        self._index_flows()

    def _index_flows(self) -> None:
        self._flow_keys = {b.flow_key for group in self._bindings.values() for b in group}

    # -- for the registrar --------------------------------------------------------------------

    def bindings(self, aor: str, now: float) -> list[Binding]:
        """Unexpired bindings of ``aor``, best q first."""
        current = [b for b in self._bindings.get(aor, []) if b.expires_at > now]
        return sorted(current, key=lambda b: -b.q)

    def replace(self, aor: str, bindings: list[Binding], flow: Flow | None, now: float) -> None:
        """Set the bindings of ``aor`` (after a REGISTER) and persist every binding."""
        live = [b for b in bindings if b.expires_at > now]
        if live:
            self._bindings[aor] = live
        else:
            self._bindings.pop(aor, None)
        if flow is not None:
            self._flows[flow.key] = flow
        self._persist(now)
        if self.on_update is not None:
            self.on_update(aor, list(live))

    def _persist(self, now: float) -> None:
        self._index_flows()
        everything = [b for group in self._bindings.values() for b in group if b.expires_at > now]
        self.store.save(everything)

    # -- for the UA ---------------------------------------------------------------------------

    def lookup(self, aor: str, now: float) -> list[Reachable]:
        """Contacts of ``aor`` (a URI, or a bare user name matched in any domain)."""
        if ":" in aor or "@" in aor:
            try:
                keys = [aor_of(aor if ":" in aor else f"sip:{aor}")]
            except SipParseError:
                return []
        else:
            keys = [k for k in self._bindings if k.split(":", 1)[1].split("@", 1)[0] == aor]
        out = []
        for key in keys:
            for binding in self.bindings(key, now):
                out.append(Reachable(binding, self._flow_for(binding)))
        return out

    def count(self, now: float) -> int:
        """How many unexpired bindings there are."""
        return sum(1 for group in self._bindings.values() for b in group if b.expires_at > now)

    def aor_for_flow(self, flow: Flow) -> str | None:
        """The address-of-record registered over ``flow`` (e.g. Jigasi's), if any."""
        if flow.key not in self._flow_keys:
            return None
        for aor, group in self._bindings.items():
            if any(b.flow_key == flow.key for b in group):
                return aor
        return None

    def is_registered_flow(self, flow: Flow) -> bool:
        """True when ``flow`` (or, over UDP, its address pair) carried a REGISTER we hold."""
        return flow.key in self._flow_keys

    def flow_closed(self, flow: Flow) -> None:
        if self._flows.get(flow.key) is flow:
            del self._flows[flow.key]

    def _flow_for(self, binding: Binding) -> Flow | None:
        flow = self._flows.get(binding.flow_key)
        if flow is not None:
            return flow
        try:
            rebuilt = Flow.from_key(binding.flow_key)
        except (ValueError, IndexError):
            return None
        return rebuilt if not rebuilt.reliable else None

    def expire(self, now: float) -> int:
        """Drop expired bindings; returns how many went."""
        dropped = 0
        for aor in list(self._bindings):
            kept = [b for b in self._bindings[aor] if b.expires_at > now]
            dropped += len(self._bindings[aor]) - len(kept)
            if kept:
                self._bindings[aor] = kept
            else:
                del self._bindings[aor]
        if dropped:
            self._persist(now)
        return dropped
