"""Dial-out authorization (meet-services.md §3.2) and the policy object behind it."""

from __future__ import annotations

import pytest

from dialbridge.config import DialoutConfig
from dialbridge.dialout_policy import DialOutPolicy


@pytest.mark.parametrize(
    ("phone", "allow", "country", "e164"),
    [
        ("4930901820", True, "DE", "+4930901820"),  # Meet strips the '+'
        ("+49 (30) 901820", True, "DE", "+4930901820"),
        ("12025550143", True, "US", "+12025550143"),
        ("4319000000", False, "AT", "+4319000000"),  # a country not allowed
        ("499001234567", False, "DE", "+499001234567"),  # premium rate
        ("4901801234567", False, "DE", "+491801234567"),  # shared cost
        ("4912", False, "DE", "+4912"),  # invalid
    ],
)
async def test_authorizephone_answers_allow_country_phone(
    client, phone, allow, country, e164
) -> None:
    r = await client.get("/authorizephone", params={"phone": phone, "region": "us-east-1"})
    assert r.status_code == 200
    assert r.json() == {"allow": allow, "country": country, "phone": e164}


async def test_authorizephone_without_phone_is_json_400(client) -> None:
    r = await client.get("/authorizephone")
    assert r.status_code == 400 and r.json()["status"] == 400


async def test_region_check_post(client) -> None:
    r = await client.post(
        "/outboundDestination", json={"appId": "t", "phoneNumber": "+49 30 901820"}
    )
    assert r.json() == {"allowed": True}
    r = await client.post("/outboundDestination", json={"phoneNumber": "+43 1 9000000"})
    assert r.json() == {"allowed": False}


def test_policy_is_default_deny() -> None:
    policy = DialOutPolicy(DialoutConfig())
    decision = policy.check("+4930901820")
    assert not decision.allow and decision.reason == "destination not allowed"


def test_prefix_rules_deny_first_then_allow() -> None:
    policy = DialOutPolicy(DialoutConfig(allow_prefixes=["+4930"], deny_prefixes=["+49309"]))
    assert policy.check("+4930123456").allow
    assert not policy.check("+4930901820").allow
    assert not policy.check("+4940123456").allow


def test_premium_can_be_allowed_explicitly() -> None:
    policy = DialOutPolicy(DialoutConfig(allowed_countries=["DE"], refuse_premium_rate=False))
    assert policy.check("+499001234567").allow


def test_national_number_uses_default_region() -> None:
    policy = DialOutPolicy(DialoutConfig(default_region="DE", allowed_countries=["DE"]))
    decision = policy.check("030 901820")
    assert decision.allow and decision.phone == "+4930901820"


def test_garbage_is_refused_not_raised() -> None:
    policy = DialOutPolicy(DialoutConfig(allowed_countries=["DE"]))
    for raw in ("", "+", "abc", "+" + "9" * 40):
        assert not policy.check(raw).allow
