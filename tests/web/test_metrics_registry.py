"""The metrics registry renders valid Prometheus text and counts what it is told."""

from __future__ import annotations

import math

import pytest

from dialbridge.metrics import DialbridgeMetrics, Registry


def test_exposition_format_for_counters_gauges_and_histograms() -> None:
    r = Registry()
    c = r.counter("x_requests_total", "Requests.", ["route"])
    g = r.gauge("x_up", "Up.")
    h = r.histogram("x_seconds", "Time.", [0.1, 1.0])
    c.labels(route='/a"b').inc()
    c.labels(route='/a"b').inc(2)
    g.set(1)
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    text = r.render()
    assert "# TYPE x_requests_total counter" in text
    assert 'x_requests_total{route="/a\\"b"} 3' in text
    assert "x_up 1" in text
    assert 'x_seconds_bucket{le="0.1"} 1' in text
    assert 'x_seconds_bucket{le="1"} 2' in text  # cumulative
    assert 'x_seconds_bucket{le="+Inf"} 3' in text
    assert "x_seconds_count 3" in text and "x_seconds_sum 5.55" in text
    assert text.endswith("\n")
    assert r.value("x_requests_total", route='/a"b') == 3
    assert r.value("x_seconds_bucket", le="+Inf") == 3


def test_misuse_is_refused() -> None:
    r = Registry()
    c = r.counter("y_total", "Y.", ["a"])
    with pytest.raises(ValueError, match="only goes up"):
        c.labels(a="1").inc(-1)
    with pytest.raises(ValueError, match="takes labels"):
        c.labels(b="1")
    with pytest.raises(ValueError, match="use .labels"):
        c.inc()
    with pytest.raises(ValueError, match="must end in _total"):
        r.counter("y", "Y.")
    with pytest.raises(ValueError, match="already registered"):
        r.counter("y_total", "again")
    with pytest.raises(ValueError, match="not a Prometheus metric name"):
        r.gauge("1bad", "bad")


def test_call_layer_reports_land_in_the_right_series() -> None:
    m = DialbridgeMetrics(Registry())
    m.call_finished({"direction": "in", "bridged_at": None, "hangup_cause": "no input"})
    m.call_finished({"direction": "out", "bridged_at": 1.0, "hangup_cause": "normal",
                     "duration": 42.0})  # fmt: skip
    m.pin_guarded("caller", "refuse")
    m.rtcp("jigasi", 0.02, 12.0)
    r = m.registry
    assert r.value("dialbridge_call_failures_total", direction="in", cause="no input") == 1
    assert r.value("dialbridge_call_failures_total", direction="out", cause="normal") == 0
    assert r.value("dialbridge_call_bridged_seconds_sum", direction="out") == 42
    assert r.value("dialbridge_pin_lockouts_total", scope="caller", action="refuse") == 1
    assert r.value("dialbridge_rtp_loss_fraction_bucket", role="jigasi", le="0.02") == 1
    assert r.value("dialbridge_rtp_loss_fraction_bucket", role="jigasi", le="0.01") == 0
    assert math.isclose(r.value("dialbridge_rtp_jitter_seconds_sum", role="jigasi"), 0.012)
