"""Counters, gauges and histograms for Prometheus, and the ones dialbridge keeps.

Theory of operation
-------------------
* This module imports nothing of ours: the call layer, the web services and the CLI all update
  the one process-wide :data:`METRICS`, and ``GET /metrics`` renders it in the Prometheus text
  exposition format (version 0.0.4). The call engine reports a finished call with
  ``METRICS.call_finished(call.record())`` and the PIN guard's delays and refusals with
  ``METRICS.pin_guarded(scope, action)``; attempts, 503s and PIN failures are taken from the
  engine's own counters at scrape time (:mod:`dialbridge.web.metrics`), so nobody counts twice.
* Values that are a *state* rather than a count (calls active now, Jigasi registered now) are
  read at scrape time by *collectors*: callables registered with
  :meth:`Registry.add_collector` that set gauges just before rendering. The live call engine is
  asked, so a gauge can never drift from the truth.
* A metric with labels is a family; ``family.labels(direction="in")`` is one series. Label
  values are escaped on output; names are checked when the metric is declared.
* Counters only go up (a negative ``inc`` is our bug: :class:`ValueError`). Tests compare a
  series before and after an action with :meth:`Registry.value`.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

LabelKey = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Family:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Prometheus metric name")
        for label in labelnames:
            if not _LABEL.fullmatch(label) or label.startswith("__") or label == "le":
                raise ValueError(f"{label!r} is not a usable label name")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._series: dict[LabelKey, object] = {}

    def _key(self, kwargs: dict[str, object]) -> LabelKey:
        if set(kwargs) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(kwargs)}")
        return tuple(str(kwargs[n]) for n in self.labelnames)

    def labels(self, **kwargs: object):  # noqa: ANN201 - the series type of the subclass
        key = self._key(kwargs)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = self._new_series()
            return series

    def _only(self):  # noqa: ANN202
        if self.labelnames:
            raise ValueError(f"{self.name} has labels {self.labelnames}: use .labels(...)")
        return self.labels()

    def clear(self) -> None:
        """Forget every series (a gauge family rebuilt by a collector at each scrape)."""
        with self._lock:
            self._series.clear()

    def _new_series(self) -> object:
        raise NotImplementedError

    def samples(self) -> Iterable[tuple[str, str, float]]:
        raise NotImplementedError

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{name}{labels} {_number(value)}" for name, labels, value in self.samples()]
        return "\n".join(lines)


class _Value:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


class CounterSeries(_Value):
    __slots__ = ()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class GaugeSeries(_Value):
    __slots__ = ()

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        super().__init__(name, help, labelnames)

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def samples(self) -> Iterable[tuple[str, str, float]]:
        for key, series in sorted(self._series.items()):
            yield self.name, _labels(self.labelnames, key), series.value


class Gauge(_Family):
    kind = "gauge"

    def _new_series(self) -> GaugeSeries:
        return GaugeSeries()

    def set(self, value: float) -> None:
        self._only().set(value)

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only().dec(amount)

    def samples(self) -> Iterable[tuple[str, str, float]]:
        for key, series in sorted(self._series.items()):
            yield self.name, _labels(self.labelnames, key), series.value


class HistogramSeries:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket, not cumulative
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1


class Histogram(_Family):
    kind = "histogram"

    def __init__(
        self, name: str, help: str, buckets: Sequence[float], labelnames: Sequence[str] = ()
    ) -> None:
        super().__init__(name, help, labelnames)
        bounds = sorted(float(b) for b in buckets)
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = tuple(bounds)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self.bounds)

    def observe(self, value: float) -> None:
        self._only().observe(value)

    def samples(self) -> Iterable[tuple[str, str, float]]:
        for key, series in sorted(self._series.items()):
            cumulative = 0
            for bound, count in zip(series.bounds, series.counts, strict=True):
                cumulative += count
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket", _labels(self.labelnames, key, le), cumulative
            yield f"{self.name}_sum", _labels(self.labelnames, key), series.sum
            yield f"{self.name}_count", _labels(self.labelnames, key), series.count


class Registry:
    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}
        self._collectors: list[Callable[[], None]] = []

    def register(self, family: _Family) -> _Family:
        if family.name in self._families:
            raise ValueError(f"{family.name} is already registered")
        self._families[family.name] = family
        return family

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, help, labelnames))  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self.register(Gauge(name, help, labelnames))  # type: ignore[return-value]

    def histogram(
        self, name: str, help: str, buckets: Sequence[float], labelnames: Sequence[str] = ()
    ) -> Histogram:
        return self.register(Histogram(name, help, buckets, labelnames))  # type: ignore[return-value]

    def add_collector(self, collector: Callable[[], None]) -> Callable[[], None]:
        """Run ``collector`` before each render; returns a function that removes it."""
        self._collectors.append(collector)

        def remove() -> None:
            if collector in self._collectors:
                self._collectors.remove(collector)

        return remove

    def collect(self) -> None:
        for collector in list(self._collectors):
            collector()

    def render(self) -> str:
        """The Prometheus text exposition format (``text/plain; version=0.0.4``)."""
        self.collect()
        return "\n".join(f.render() for f in self._families.values()) + "\n"

    def value(self, name: str, **labels: object) -> float:
        """One sample by its exposition name (``x_total``, ``x_bucket`` with ``le``, ``x_count``);
        0 when the series does not exist yet."""
        wanted = {k: str(v) for k, v in labels.items()}
        for family in self._families.values():
            if not name.startswith(family.name):
                continue
            for sample, rendered, value in family.samples():
                if sample == name and _parse_labels(rendered) == wanted:
                    return value
        return 0.0


def _parse_labels(rendered: str) -> dict[str, str]:
    return {
        k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rendered)
    }


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Buckets: loss as a fraction (RFC 3550 §6.4.1 "fraction lost"), jitter in seconds
# (§6.4.1 "interarrival jitter" converted from timestamp units), CPU as a share of one core.
LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
JITTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
CPU_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
DURATION_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400)


class DialbridgeMetrics:
    """Every metric dialbridge exports, declared in one place (``dialbridge_*``)."""

    def __init__(self, registry: Registry | None = None) -> None:
        r = self.registry = registry or Registry()
        self.calls_active = r.gauge(
            "dialbridge_calls_active",
            "Calls in progress, by direction (in = dial-in).",
            ["direction"],
        )
        self.call_attempts = r.counter(
            "dialbridge_call_attempts_total", "Calls started (INVITEs routed), by direction.",
            ["direction"],
        )  # fmt: skip
        self.call_failures = r.counter(
            "dialbridge_call_failures_total",
            "Calls that ended without being bridged, by direction and cause.",
            ["direction", "cause"],
        )
        self.calls_refused = r.counter(
            "dialbridge_calls_refused_total", "INVITEs refused before a call began, by SIP status.",
            ["status"],
        )  # fmt: skip
        self.call_duration = r.histogram(
            "dialbridge_call_bridged_seconds", "Bridged time of finished calls.",
            DURATION_BUCKETS, ["direction"],
        )  # fmt: skip
        self.pin_failures = r.counter(
            "dialbridge_pin_failures_total", "Wrong or unknown PINs typed by callers."
        )
        self.pin_lockouts = r.counter(
            "dialbridge_pin_lockouts_total",
            "Callers delayed or refused by the PIN guard, by scope (caller, global) and action.",
            ["scope", "action"],
        )
        self.registration = r.gauge(
            "dialbridge_registration_up",
            "1 when the SIP account (Jigasi) has a live registration, else 0; by kind and name.",
            ["kind", "name"],
        )
        self.registered_contacts = r.gauge(
            "dialbridge_registered_contacts", "Live registered contacts per SIP account.", ["name"]
        )
        self.rtp_loss = r.histogram(
            "dialbridge_rtp_loss_fraction",
            "RTP fraction lost per RTCP interval, per leg role (RFC 3550 §6.4.1).",
            LOSS_BUCKETS, ["role"],
        )  # fmt: skip
        self.rtp_jitter = r.histogram(
            "dialbridge_rtp_jitter_seconds",
            "RTP interarrival jitter per RTCP interval, per leg role (RFC 3550 §6.4.1).",
            JITTER_BUCKETS, ["role"],
        )  # fmt: skip
        self.media_cpu_per_call = r.histogram(
            "dialbridge_media_cpu_per_call_ratio",
            "Process CPU (share of one core) per active call, sampled at each scrape.",
            CPU_BUCKETS,
        )
        self.process_cpu = r.counter(
            "dialbridge_process_cpu_seconds_total", "CPU time of this process (user + system)."
        )
        self.http_requests = r.counter(
            "dialbridge_http_requests_total",
            "HTTP requests served, by route template and status class.",
            ["route", "status"],
        )
        self.start_time = r.gauge(
            "dialbridge_start_time_seconds", "When this process started (Unix time)."
        )
        self.start_time.set(time.time())
        self._cpu_seen = time.process_time()
        self._cpu_sampled_at = time.monotonic()
        r.add_collector(self._sample_cpu)

    # -- what the call layer reports ------------------------------------------------------------

    def call_ended(
        self,
        direction: str,
        *,
        bridged: bool,
        cause: str,
        duration: float = 0.0,
    ) -> None:
        """One finished call: a failure (by cause) unless it was bridged."""
        if not bridged:
            self.call_failures.labels(direction=direction, cause=cause or "unknown").inc()
        else:
            self.call_duration.labels(direction=direction).observe(duration)

    def call_finished(self, record: Mapping[str, Any]) -> None:
        """A finished call from its CDR fields (``Call.record()``): one line in the engine."""
        self.call_ended(
            record.get("direction") or "in",
            bridged=record.get("bridged_at") is not None,
            cause=record.get("hangup_cause") or "",
            duration=record.get("duration") or 0.0,
        )

    def pin_guarded(self, scope: str, action: str) -> None:
        """The PIN guard delayed (``action="delay"``) or refused a caller; scope caller/global."""
        self.pin_lockouts.labels(scope=scope, action=action).inc()

    def rtcp(self, role: str, fraction_lost: float, jitter_ms: float) -> None:
        """One RTCP interval's receive figures of a leg (``caller``, ``jigasi``, ``trunk``)."""
        self.rtp_loss.labels(role=role).observe(max(0.0, min(1.0, fraction_lost)))
        self.rtp_jitter.labels(role=role).observe(max(0.0, jitter_ms) / 1000.0)

    # -- scrape-time samples --------------------------------------------------------------------

    def _sample_cpu(self) -> None:
        cpu, now = time.process_time(), time.monotonic()
        used, elapsed = cpu - self._cpu_seen, now - self._cpu_sampled_at
        self.process_cpu.inc(max(0.0, used))
        self._cpu_seen, self._cpu_sampled_at = cpu, now
        active = sum(s.value for s in self.calls_active._series.values())  # noqa: SLF001
        if active >= 1 and elapsed > 0.5:
            self.media_cpu_per_call.observe(used / elapsed / active)


METRICS = DialbridgeMetrics()
