"""``/metrics`` scraped around a real call (phone stand-in → dialbridge → Jigasi stand-in): the
gauges show the live call and Jigasi's registration, and the counters moved."""

from __future__ import annotations

import re
from pathlib import Path

from dialbridge.calls.standins import wait_for
from dialbridge.metrics import METRICS
from tests.ops.rig import ADMIN_TOKEN, live_dialbridge


def sample(text: str, metric: str, /, **labels: str) -> float:
    """One sample's value from the exposition text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        assert m, f"not a sample line: {line!r}"
        if m.group(1) != metric:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if got == labels:
            return float(m.group(3))
    return 0.0


async def test_counters_move_after_a_call(tmp_path: Path) -> None:
    async with live_dialbridge(tmp_path) as db:
        before = await db.scrape()
        assert "# TYPE dialbridge_calls_active gauge" in before
        assert sample(before, "dialbridge_registration_up", kind="jigasi", name="jigasi") == 1
        assert sample(before, "dialbridge_calls_active", direction="in") == 0

        call = await db.dial_in()
        during = await db.scrape()
        assert sample(during, "dialbridge_calls_active", direction="in") == 1
        # RTCP every 5 s per leg feeds the loss and jitter histograms (RFC 3550 §6.4.1 figures).
        rtcp_before = METRICS.registry.value("dialbridge_rtp_loss_fraction_count", role="caller")
        assert await wait_for(
            lambda: (
                METRICS.registry.value("dialbridge_rtp_jitter_seconds_count", role="jigasi")
                > sample(before, "dialbridge_rtp_jitter_seconds_count", role="jigasi")
                and METRICS.registry.value("dialbridge_rtp_loss_fraction_count", role="caller")
                > rtcp_before
            ),
            12,
        )
        await call.hangup()
        assert await wait_for(lambda: not db.engine.calls, 10)
        after = await db.scrape()

        assert sample(after, "dialbridge_calls_active", direction="in") == 0

        def moved(metric: str, /, **labels: str) -> float:
            return sample(after, metric, **labels) - sample(before, metric, **labels)

        # The call engine's own counters, mirrored at scrape time.
        assert moved("dialbridge_engine_events_total", event="invites") == 1
        assert moved("dialbridge_engine_events_total", event="calls_in") == 1
        assert moved("dialbridge_call_attempts_total", direction="in") == 1
        assert moved("dialbridge_call_attempts_total", direction="out") == 0
        # The finished, bridged call reached the duration histogram (engine → METRICS.call_finished).
        assert moved("dialbridge_call_bridged_seconds_count", direction="in") == 1
        # The SIP stack: REGISTER is before, the call's INVITE/ACK/BYE and RFC 4733 are not SIP.
        assert moved("dialbridge_sip_events_total", event="requests_in") >= 3
        # The HTTP services count themselves (the scrapes in between).
        assert moved("dialbridge_http_requests_total", route="/metrics", status="2xx") >= 2
        assert sample(after, "dialbridge_process_cpu_seconds_total") > 0
        assert moved("dialbridge_rtp_loss_fraction_count", role="caller") >= 1
        assert sample(after, "dialbridge_rtp_loss_fraction_bucket", role="caller", le="+Inf") >= 1


async def test_metrics_can_require_the_admin_token(tmp_path: Path) -> None:
    async with live_dialbridge(
        tmp_path, admin={"token": ADMIN_TOKEN, "metrics_public": False}
    ) as db:
        assert (await db.http.get("/metrics")).status_code == 401
        ok = await db.http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("text/plain; version=0.0.4")
