"""``GET /metrics``: Prometheus text format, from :data:`dialbridge.metrics.METRICS`.

At each scrape the live call engine (when this process runs one) is read for the states:
calls active by direction, each SIP account's registration, and the SIP stack's and call
engine's own counters. RTCP receive figures feed the loss and jitter histograms as they
arrive (a media-event subscription made when the engine is attached). The HTTP services count
their requests by route template and status class here too.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from dialbridge.metrics import CONTENT_TYPE, METRICS, DialbridgeMetrics
from dialbridge.web.admin import require_admin

router = APIRouter(tags=["operations"])

_engine_events = METRICS.registry.counter(
    "dialbridge_engine_events_total",
    "Call engine events (invites, calls_in, calls_out, refused_busy, pin_failures, ...).",
    ["event"],
)
_sip_events = METRICS.registry.counter(
    "dialbridge_sip_events_total",
    "SIP stack counters (requests_in, auth_failures, ...).",
    ["event"],
)
_sip_state = METRICS.registry.gauge(
    "dialbridge_sip_state", "SIP stack sizes now (dialogs, transactions, bindings, ...).", ["what"]
)
_SIP_GAUGES = frozenset(
    {"dialogs", "transactions", "incoming_calls_pending", "bindings", "connections"}
)
# Last value mirrored from each engine's own counters: a new engine (a restart in tests)
# starts from zero without the exported counter going down.
_seen: weakref.WeakKeyDictionary[Any, dict[str, float]] = weakref.WeakKeyDictionary()


def _mirror(counter: Any, engine: Any, prefix: str, values: dict[str, Any]) -> None:
    seen = _seen.setdefault(engine, {})
    for name, value in values.items():
        key = prefix + name
        delta = float(value) - seen.get(key, 0.0)
        if delta > 0:
            counter.labels(event=name).inc(delta)
            named = _NAMED.get(name)
            if named is not None:
                named(METRICS).inc(delta)
        seen[key] = float(value)


# The call engine's own counter keys that are also named metrics (engine.py counts them).
_NAMED = {
    "calls_in": lambda m: m.call_attempts.labels(direction="in"),
    "calls_out": lambda m: m.call_attempts.labels(direction="out"),
    "refused_busy": lambda m: m.calls_refused.labels(status="503"),
    "pin_failures": lambda m: m.pin_failures,
}


def observe_engine(engine: Any, metrics: DialbridgeMetrics = METRICS) -> None:
    """Set the state gauges from a live :class:`~dialbridge.calls.engine.CallEngine`."""
    active = {"in": 0, "out": 0}
    for call in list(engine.calls.values()):
        active[call.direction] = active.get(call.direction, 0) + 1
    for direction, count in active.items():
        metrics.calls_active.labels(direction=direction).set(count)
    now = time.time()
    config = engine.config
    for user in config.users:
        contacts = len(engine.ua.location.lookup(user.name, now))
        kind = "jigasi" if user.name == config.jigasi.user else "user"
        metrics.registration.labels(kind=kind, name=user.name).set(1 if contacts else 0)
        metrics.registered_contacts.labels(name=user.name).set(contacts)
    _mirror(_engine_events, engine, "engine:", dict(engine.metrics))
    stats = getattr(engine.ua, "stats", None)
    if stats is not None:
        values = stats()
        _mirror(
            _sip_events, engine, "sip:", {k: v for k, v in values.items() if k not in _SIP_GAUGES}
        )
        for what in _SIP_GAUGES & values.keys():
            _sip_state.labels(what=what).set(values[what])


_watched: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_media(engine: Any, metrics: DialbridgeMetrics = METRICS) -> Any:
    """Feed RTCP receive figures into the loss/jitter histograms (once per engine, however many
    apps are made for it); returns the unsubscribe function, or None if already watched."""
    if engine in _watched:
        return None
    _watched.add(engine)

    def on_event(event: Any) -> None:
        if type(event).__name__ != "RtcpStats":
            return
        leg = engine.legs.get(getattr(event, "session_id", None))
        role = leg.role if leg is not None else "unknown"
        metrics.rtcp(role, event.fraction_lost, event.jitter_ms)

    return engine.media.subscribe(on_event)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    config = request.app.state.services.config
    if not config.admin.metrics_public:
        require_admin(request)
    engine = getattr(request.app.state, "call_engine", None)
    if engine is not None:
        observe_engine(engine)
    return Response(METRICS.registry.render(), media_type=CONTENT_TYPE)


def install(app: FastAPI) -> None:
    """Count every HTTP request by route template (not the raw path) and status class."""

    @app.middleware("http")
    async def _count(request: Request, call_next):  # noqa: ANN001, ANN202
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        METRICS.http_requests.labels(
            route=template, status=f"{response.status_code // 100}xx"
        ).inc()
        return response
