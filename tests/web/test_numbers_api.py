"""/phoneNumberList in both formats Meet parses (meet-services.md §2.4)."""

from __future__ import annotations

import pytest

from dialbridge.config import ConfigError, load_config
from tests.web.conftest import MUC


async def test_array_format_with_default_first_and_international_formatting(client) -> None:
    r = await client.get("/phoneNumberList", params={"conference": f"room@{MUC}"})
    assert r.status_code == 200
    assert r.json() == [
        {
            "countryCode": "DE",
            "formattedNumber": "+49 30 1234567",
            "tollFree": False,
            "default": True,
        },
        {"countryCode": "US", "formattedNumber": "+1 202-555-0143", "tollFree": False},
    ]


async def test_legacy_format_by_query_and_by_config(client, make_client) -> None:
    legacy = (await client.get("/phoneNumberList", params={"format": "legacy"})).json()
    assert legacy == {
        "message": "Phone numbers available.",
        "numbers": {"DE": ["+49 30 1234567"], "US": ["+1 202-555-0143"]},
        "numbersEnabled": True,
    }
    c = await make_client(numbers={"format": "legacy", "entries": [{"number": "+4930123456"}]})
    assert (await c.get("/phoneNumberList")).json()["numbersEnabled"] is True


async def test_no_numbers_makes_meet_hide_dial_in(make_client) -> None:
    c = await make_client()
    assert (await c.get("/phoneNumberList")).json() == []
    legacy = (await c.get("/phoneNumberList", params={"format": "legacy"})).json()
    assert legacy["numbersEnabled"] is False and legacy["numbers"] == {}


async def test_toll_free_is_derived_and_sip_entries_pass_through(make_client) -> None:
    c = await make_client(
        numbers={
            "entries": [
                {"number": "+1 800 555 0199"},
                {"number": "sip:dialin@meet.example.com", "country": "SIP"},
            ]
        }
    )
    body = (await c.get("/phoneNumberList")).json()
    assert body[0]["tollFree"] is True and body[0]["countryCode"] == "US"
    assert body[1] == {
        "countryCode": "SIP",
        "formattedNumber": "sip:dialin@meet.example.com",
        "tollFree": False,
    }


async def test_tenant_gets_its_own_list(make_client) -> None:
    c = await make_client(
        mapper={"allowed_domains": [MUC]},
        numbers={
            "entries": [
                {"number": "+49 30 1234567"},
                {"number": "+43 1 2345678", "tenants": ["acme"]},
            ]
        },
    )
    shared = (await c.get("/phoneNumberList", params={"conference": f"r@{MUC}"})).json()
    acme = (
        await c.get("/phoneNumberList", params={"conference": "r@conference.acme.meet.example.com"})
    ).json()
    other = (
        await c.get("/phoneNumberList", params={"conference": "r@conference.zeta.meet.example.com"})
    ).json()
    assert [n["countryCode"] for n in shared] == ["DE"]
    assert [n["countryCode"] for n in acme] == ["AT"]
    assert other == shared


def test_a_bad_number_stops_start_up_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"numbers\.entries\.0"):
        load_config(None, numbers={"entries": [{"number": "not a number"}]})
