"""Edge screening: scanners dropped, floods limited, trunks by CIDR, unknown sources refused."""

import pytest

from dialbridge.sip.message import Headers, Request
from dialbridge.sip.security import EdgePolicy, Trunk, Verdict


def req(method="INVITE", user_agent=None):
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bKx"),
            ("From", "<sip:x@y>;tag=1"),
            ("To", "<sip:100@us>"),
            ("Call-ID", "c"),
            ("CSeq", f"1 {method}"),
        ]
    )
    if user_agent:
        headers.add("User-Agent", user_agent)
    return Request(method, "sip:100@us", headers)


@pytest.mark.parametrize(
    "agent",
    ["friendly-scanner", "sipvicious 0.3", "SIPCLI/v1.8", "VaxSIPUserAgent/3.1", "sip-scan"],
)
def test_scanner_user_agents_are_dropped(agent):
    policy = EdgePolicy(trunks=[Trunk.from_cidrs("t", ["198.51.100.0/24"])])
    decision = policy.screen(req(user_agent=agent), "198.51.100.9", now=0.0)
    assert decision.verdict is Verdict.DROP  # even from a trunk address


def test_trunk_recognised_by_source_cidr():
    trunk = Trunk.from_cidrs("carrier", ["203.0.113.0/28", "2001:db8::/32"])
    policy = EdgePolicy(trunks=[trunk])
    assert policy.screen(req(), "203.0.113.5", 0.0).trunk is trunk
    assert policy.screen(req(), "2001:db8::7", 0.0).verdict is Verdict.ACCEPT
    assert policy.screen(req(), "203.0.113.17", 0.0).trunk is None


def test_unknown_source_is_forbidden_without_digest_and_challenged_with_it():
    assert (
        EdgePolicy(digest_enabled=False).screen(req(), "192.0.2.1", 0.0).verdict is Verdict.FORBID
    )
    assert (
        EdgePolicy(digest_enabled=True).screen(req(), "192.0.2.1", 0.0).verdict is Verdict.CHALLENGE
    )


def test_register_and_known_sources_pass():
    policy = EdgePolicy(digest_enabled=False)
    assert policy.screen(req("REGISTER"), "192.0.2.1", 0.0).verdict is Verdict.ACCEPT
    assert policy.screen(req("INFO"), "192.0.2.1", 0.0, known_source=True).verdict is Verdict.ACCEPT
    assert policy.screen(req("ACK"), "192.0.2.1", 0.0).verdict is Verdict.ACCEPT


def test_flood_limit_drops_above_burst_and_refills_with_time():
    policy = EdgePolicy(flood_rate=10.0, flood_burst=5.0, digest_enabled=False)
    verdicts = [policy.screen(req("REGISTER"), "192.0.2.1", 0.0).verdict for _ in range(7)]
    assert verdicts[:5] == [Verdict.ACCEPT] * 5
    assert verdicts[5:] == [Verdict.DROP] * 2
    # Another source is not affected.
    assert policy.screen(req("REGISTER"), "192.0.2.2", 0.0).verdict is Verdict.ACCEPT
    # 0.1 s later one token is back.
    assert policy.screen(req("REGISTER"), "192.0.2.1", 0.1).verdict is Verdict.ACCEPT
    assert policy.screen(req("REGISTER"), "192.0.2.1", 0.1).verdict is Verdict.DROP


def test_tracked_sources_are_bounded():
    policy = EdgePolicy(flood_rate=1.0, flood_burst=1.0, max_tracked_sources=100)
    for i in range(1000):
        policy.screen(req("REGISTER"), f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(policy._buckets) <= 100


def test_trunk_found_by_digest_user():
    trunk = Trunk.from_cidrs("carrier", [], digest_user="carrier1")
    policy = EdgePolicy(trunks=[trunk])
    assert policy.trunk_for_digest_user("carrier1") is trunk
    assert policy.trunk_for_digest_user("other") is None


def test_trunks_and_known_sources_are_not_flood_limited_but_scanners_still_dropped():
    policy = EdgePolicy(
        trunks=[Trunk.from_cidrs("t", ["198.51.100.0/24"])], flood_rate=1.0, flood_burst=1.0
    )
    assert all(policy.admit(req(), "198.51.100.9", 0.0) is None for _ in range(100))
    assert all(policy.admit(req(), "192.0.2.1", 0.0, known_source=True) is None for _ in range(100))
    assert policy.admit(req(), "192.0.2.1", 0.0) is None
    assert policy.admit(req(), "192.0.2.1", 0.0).verdict is Verdict.DROP
    assert policy.admit(req(user_agent="sipvicious"), "198.51.100.9", 0.0).verdict is Verdict.DROP


def test_repeated_wrong_credentials_ban_a_source_for_a_while():
    policy = EdgePolicy(failure_limit=3, failure_window=60.0, ban_seconds=300.0)
    assert policy.auth_failed("192.0.2.1", 0.0) is False
    assert policy.auth_failed("192.0.2.1", 1.0) is False
    assert policy.admit(req("REGISTER"), "192.0.2.1", 1.5) is None
    assert policy.auth_failed("192.0.2.1", 2.0) is True
    assert policy.admit(req("REGISTER"), "192.0.2.1", 3.0).verdict is Verdict.DROP
    assert policy.admit(req("REGISTER"), "192.0.2.2", 3.0) is None  # others unaffected
    assert policy.admit(req("REGISTER"), "192.0.2.1", 302.5) is None  # ban over


def test_failures_outside_the_window_do_not_add_up():
    policy = EdgePolicy(failure_limit=3, failure_window=10.0)
    assert not any(policy.auth_failed("192.0.2.1", t) for t in (0.0, 20.0, 40.0, 60.0))


def test_set_trunks_takes_effect_at_once():
    policy = EdgePolicy(trunks=[Trunk.from_cidrs("old", ["198.51.100.0/24"])])
    assert policy.trunk_for_address("198.51.100.1").name == "old"
    policy.set_trunks([Trunk.from_cidrs("new", ["203.0.113.0/24"])])
    assert policy.trunk_for_address("198.51.100.1") is None
    assert policy.trunk_for_address("203.0.113.1").name == "new"
