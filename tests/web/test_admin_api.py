"""The admin API: token handling, live calls with hang-up, registrations, PINs, numbers, CDRs —
against a running dialbridge with a real call from the stand-ins."""

from __future__ import annotations

from pathlib import Path

from dialbridge.calls.standins import wait_for
from tests.ops.rig import ADMIN_TOKEN, MUC, live_dialbridge

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_admin_needs_the_token_and_is_absent_without_one(tmp_path: Path) -> None:
    async with live_dialbridge(tmp_path) as db:
        assert (await db.http.get("/admin/api/calls")).status_code == 401
        wrong = await db.http.get("/admin/api/calls", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json() == {"message": "admin token required",
                                                             "status": 401}  # fmt: skip
        page = await db.http.get("/admin")
        assert page.status_code == 200 and "dialbridge admin" in page.text
        assert page.headers["x-frame-options"] == "DENY"
    async with live_dialbridge(tmp_path / "off", admin={"token": ""}) as db:
        assert (await db.http.get("/admin")).status_code == 404
        assert (await db.http.get("/admin/api/calls", headers=AUTH)).status_code == 404


async def test_live_call_is_listed_and_hung_up_with_a_cdr(tmp_path: Path) -> None:
    async with live_dialbridge(tmp_path) as db:
        regs = (await db.http.get("/admin/api/registrations", headers=AUTH)).json()
        (jigasi,) = regs["users"]
        assert (
            jigasi["jigasi"]
            and jigasi["registered"]
            and jigasi["contacts"][0]["transport"] == "udp"
        )
        assert regs["trunks"][0]["name"] == "carrier"

        phone_call = await db.dial_in(caller="+4930123456712")
        (call,) = (await db.http.get("/admin/api/calls", headers=AUTH)).json()["calls"]
        assert call["state"] == "bridged" and call["direction"] == "in"
        assert call["room"] == f"weekly@{MUC}"
        assert call["caller"] == "+49 \u2022\u2022\u2022 \u2022\u2022\u2022\u2022 12"
        assert [leg["role"] for leg in call["legs"]] == ["caller", "jigasi"]
        assert all(leg["state"] == "answered" for leg in call["legs"])

        hung = await db.http.post(f"/admin/api/calls/{call['id']}/hangup", headers=AUTH)
        assert hung.status_code == 200
        assert await phone_call.ended(5) == "remote bye"
        assert await wait_for(lambda: not db.engine.calls, 5)
        again = await db.http.post(f"/admin/api/calls/{call['id']}/hangup", headers=AUTH)
        assert again.status_code == 404

        (cdr,) = (await db.http.get("/admin/api/cdrs", headers=AUTH)).json()["cdrs"]
        assert cdr["call_id"] == call["id"] and cdr["hangup_cause"] == "hung up by admin"
        assert cdr["quality"] in ("good", "fair", "poor", "unknown")
        filtered = await db.http.get("/admin/api/cdrs?room=other&direction=in", headers=AUTH)
        assert filtered.json()["cdrs"] == []
        bad = await db.http.get("/admin/api/cdrs?since=yesterday", headers=AUTH)
        assert bad.status_code == 400 and "since" in bad.json()["message"]


async def test_static_pin_is_set_and_found(tmp_path: Path) -> None:
    async with live_dialbridge(tmp_path) as db:
        body = {"conference": f"Board Room@{MUC}", "pin": "4242424242"}
        made = await db.http.post("/admin/api/pins", json=body, headers=AUTH)
        assert made.status_code == 200, made.text
        assert made.json()["conference"] == f"board%20room@{MUC}" and made.json()["static"]
        found = (await db.http.get("/admin/api/pins?search=board", headers=AUTH)).json()["pins"]
        assert [p["pin"] for p in found] == ["4242424242"]
        taken = await db.http.post("/admin/api/pins", headers=AUTH,
                                   json={"conference": f"other@{MUC}", "pin": "4242424242"})  # fmt: skip
        assert taken.status_code == 409
        bad = await db.http.post("/admin/api/pins", headers=AUTH,
                                 json={"conference": f"x@{MUC}", "pin": "0123"})  # fmt: skip
        assert bad.status_code == 400


async def test_numbers_show_their_ivr_language(tmp_path: Path) -> None:
    async with live_dialbridge(tmp_path, ivr={"language": "de"}) as db:
        numbers = (await db.http.get("/admin/api/numbers", headers=AUTH)).json()["numbers"]
        assert [(n["country"], n["language"], n["default"]) for n in numbers] == [
            ("DE", "de", True),
            ("US", "en", False),
        ]


async def test_dial_out_call_is_listed_with_its_destination_and_hung_up(tmp_path: Path) -> None:
    import asyncio

    async with live_dialbridge(tmp_path) as db:
        outgoing, _rtp = await db.jigasi.dial_out("+4930901820", f"weekly@{MUC}")
        jigasi_dialog = await asyncio.wait_for(outgoing.answered(), 10)
        assert await wait_for(lambda: any(c.bridged_at for c in db.engine.calls.values()), 10)
        (call,) = (await db.http.get("/admin/api/calls", headers=AUTH)).json()["calls"]
        assert (call["direction"], call["state"]) == ("out", "bridged")
        assert call["destination"] == "+4930901820" and call["caller"] is None
        assert [leg["role"] for leg in call["legs"]] == ["jigasi", "trunk"]
        hung = await db.http.post(f"/admin/api/calls/{call['id']}/hangup", headers=AUTH)
        assert hung.status_code == 200
        await asyncio.wait_for(asyncio.shield(jigasi_dialog.terminated), 5)
        assert await wait_for(lambda: not db.engine.calls, 5)
        (cdr,) = (await db.http.get("/admin/api/cdrs?direction=out", headers=AUTH)).json()["cdrs"]
        assert cdr["destination"] == "+4930901820" and cdr["hangup_cause"] == "hung up by admin"
