"""/conferenceMapper as Meet and IVRs call it (meet-services.md §2.2, §2.3, §7)."""

from __future__ import annotations

import pytest

from tests.web.conftest import MUC


async def test_conference_creates_mapping_with_integer_id_and_canonical_jid(client) -> None:
    r = await client.get(
        "/conferenceMapper",
        params={"conference": f"MyRoom@{MUC}", "url": "https://meet.example.com/MyRoom"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"message", "id", "conference"}
    assert isinstance(body["id"], int) and len(str(body["id"])) == 10
    assert body["conference"] == f"myroom@{MUC}"


async def test_every_spelling_of_a_room_gets_one_pin(client) -> None:
    ids = set()
    for room in ("MyRoom", "myroom", "MYROOM"):
        ids.add(
            (await client.get("/conferenceMapper", params={"conference": f"{room}@{MUC}"})).json()[
                "id"
            ]
        )
    assert len(ids) == 1
    cafe = set()
    # Meet sends the raw URL segment unencoded, so the query parser sees "Caf%C3%A9" or "Café".
    for raw_query in (
        "conference=Caf%25C3%25A9@" + MUC,
        "conference=Caf%C3%A9@" + MUC,
        "conference=caf%25c3%25a9@" + MUC,
    ):
        cafe.add((await client.get(f"/conferenceMapper?{raw_query}")).json()["conference"])
    assert cafe == {f"caf%c3%a9@{MUC}"}


async def test_reverse_lookup_by_id_and_cid(client) -> None:
    created = (await client.get("/conferenceMapper", params={"conference": f"Weekly@{MUC}"})).json()
    for name in ("id", "cid"):
        found = (await client.get("/conferenceMapper", params={name: str(created["id"])})).json()
        assert found["conference"] == created["conference"] and found["id"] == created["id"]
    spaced = " ".join([str(created["id"])[:4], str(created["id"])[4:8], str(created["id"])[8:]])
    assert (await client.get("/conferenceMapper", params={"id": spaced})).json()["id"] == created[
        "id"
    ]


async def test_unknown_pin_answers_200_with_conference_false(client) -> None:
    r = await client.get("/conferenceMapper", params={"id": "1234567890"})
    assert r.status_code == 200
    assert r.json() == {
        "message": "No conference mapping was found",
        "id": 1234567890,
        "conference": False,
    }


async def test_conference_wins_over_id(client) -> None:
    a = (await client.get("/conferenceMapper", params={"conference": f"a@{MUC}"})).json()
    b = (
        await client.get("/conferenceMapper", params={"conference": f"b@{MUC}", "id": str(a["id"])})
    ).json()
    assert b["conference"] == f"b@{MUC}" and b["id"] != a["id"]


async def test_post_accepts_conference_room_domain_and_id(client) -> None:
    by_conf = (await client.post("/conferenceMapper", json={"conference": f"Team@{MUC}"})).json()
    by_parts = (
        await client.post("/conferenceMapper", json={"room": "TEAM", "domain": MUC.upper()})
    ).json()
    by_id = (await client.post("/conferenceMapper", json={"id": by_conf["id"]})).json()
    assert by_conf == by_parts == by_id
    assert by_conf["conference"] == f"team@{MUC}"


async def test_tenant_rooms_keep_their_tenant(client) -> None:
    body = (
        await client.get(
            "/conferenceMapper", params={"conference": "Room@conference.Acme.meet.example.com"}
        )
    ).json()
    assert body["conference"] == "room@conference.acme.meet.example.com"
    plain = (await client.get("/conferenceMapper", params={"conference": f"Room@{MUC}"})).json()
    assert plain["id"] != body["id"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"conference": "no-at-sign"}, 400),
        ({"conference": "%FF@" + MUC}, 400),
        ({"id": "12ab"}, 400),
        ({"conference": "room@bad domain"}, 400),
    ],
)
async def test_bad_input_is_a_json_error_with_message_and_status(client, params, status) -> None:
    r = await client.get("/conferenceMapper", params=params)
    assert r.status_code == status
    body = r.json()
    assert body["status"] == status and isinstance(body["message"], str) and body["message"]


async def test_bad_json_body_is_a_json_400(client) -> None:
    r = await client.post(
        "/conferenceMapper", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["status"] == 400


async def test_allowed_domains_refuse_strangers_with_json_403(make_client) -> None:
    c = await make_client(mapper={"allowed_domains": [MUC]})
    assert (await c.get("/conferenceMapper", params={"conference": f"r@{MUC}"})).status_code == 200
    assert (
        await c.get(
            "/conferenceMapper", params={"conference": "r@conference.acme.meet.example.com"}
        )
    ).status_code == 200
    r = await c.get("/conferenceMapper", params={"conference": "r@conference.other.org"})
    assert r.status_code == 403 and r.json()["status"] == 403
    # With a default domain, POST {room} alone works.
    assert (await c.post("/conferenceMapper", json={"room": "r"})).json()[
        "conference"
    ] == f"r@{MUC}"


async def test_pin_length_is_configurable(make_client) -> None:
    c = await make_client(mapper={"pin_length": 13})
    assert (
        len(str((await c.get("/conferenceMapper", params={"conference": f"r@{MUC}"})).json()["id"]))
        == 13
    )


async def test_cors_allow_list(make_client) -> None:
    c = await make_client(http={"cors_origins": ["https://meet.example.com"]})
    ok = await c.get(
        "/conferenceMapper",
        params={"conference": f"r@{MUC}"},
        headers={"Origin": "https://meet.example.com"},
    )
    assert ok.headers["access-control-allow-origin"] == "https://meet.example.com"
    other = await c.get(
        "/conferenceMapper",
        params={"conference": f"r@{MUC}"},
        headers={"Origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in other.headers
    star = await make_client(http={"cors_origins": ["*"]})
    r = await star.get("/phoneNumberList", headers={"Origin": "https://any.example"})
    assert r.headers["access-control-allow-origin"] == "*"


async def test_healthz_checks_the_store(client) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "store": "ok"}


async def test_healthz_is_503_when_the_store_is_down(tmp_path) -> None:
    import httpx

    from dialbridge.app import open_services
    from dialbridge.config import load_config
    from dialbridge.web import create_http_app

    # Nothing listens on port 9 of loopback: the store is unreachable.
    config = load_config(None, store={"url": "postgresql://x:y@127.0.0.1:9/none"})
    async with open_services(config, migrate=False) as services:
        transport = httpx.ASGITransport(app=create_http_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == 503


async def test_unknown_path_is_json_404(client) -> None:
    r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["status"] == 404


async def test_golive_knows_mapped_conferences_only(client) -> None:
    await client.get("/conferenceMapper", params={"conference": f"live@{MUC}"})
    assert (
        await client.post("/waiting-queue/golive", json={"conference": f"Live@{MUC}"})
    ).status_code == 200
    assert (
        await client.post("/waiting-queue/golive", json={"conference": f"nobody@{MUC}"})
    ).status_code == 404
