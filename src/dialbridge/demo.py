"""``dialbridge demo``: dialbridge on embedded defaults, exercised the way Meet uses it.

It starts the real HTTP services on 127.0.0.1 (a temporary SQLite store, one German dial-in
number, dial-out allowed to Germany), then plays Meet's part: ask the mapper for a room's PIN,
look the PIN up as the IVR will, fetch the number list, and ask whether two numbers may be
called. It prints each step with its timing and exits 0 when every answer was right.
The phone-call part of the story joins once the SIP and call engines land.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from pathlib import Path

import httpx

from dialbridge.config import load_config

ROOM = "Café Weekly"
MUC = "conference.meet.example.com"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_demo() -> int:
    import uvicorn

    from dialbridge.app import open_services
    from dialbridge.web import create_http_app

    with tempfile.TemporaryDirectory(prefix="dialbridge-demo-") as tmp:
        port = _free_port()
        config = load_config(
            None,
            http={"host": "127.0.0.1", "port": port},
            store={"data_dir": str(Path(tmp))},
            mapper={"allowed_domains": [MUC]},
            numbers={"entries": [{"number": "+49 30 1234567", "default": True}]},
            dialout={"allowed_countries": ["DE"]},
        )
        t0 = time.perf_counter()

        def say(text: str) -> None:
            print(f"[{(time.perf_counter() - t0) * 1000:7.1f} ms] {text}", flush=True)

        async with open_services(config) as services:
            server = uvicorn.Server(
                uvicorn.Config(
                    create_http_app(services),
                    host="127.0.0.1",
                    port=port,
                    log_level="warning",
                    lifespan="off",
                )
            )
            task = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.01)
            say(
                f"dialbridge HTTP services up on http://127.0.0.1:{port} (store: {config.store.effective_url})"
            )
            failures = 0

            def check(ok: bool, text: str) -> None:
                nonlocal failures
                failures += not ok
                say(("ok   " if ok else "FAIL ") + text)

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                # Meet sends the room as the browser shows it, unencoded (meet-services.md §2.2).
                r = (
                    await http.get("/conferenceMapper", params={"conference": f"{ROOM}@{MUC}"})
                ).json()
                check(
                    isinstance(r.get("id"), int),
                    f"Meet asks for a PIN for '{ROOM}': PIN {r.get('id')}, room JID {r.get('conference')}",
                )
                pin = r["id"]
                r2 = (
                    await http.get(
                        "/conferenceMapper", params={"conference": f"caf%C3%A9 weekly@{MUC}"}
                    )
                ).json()
                check(r2.get("id") == pin, "another spelling of the same room gets the same PIN")
                r3 = (await http.get("/conferenceMapper", params={"cid": str(pin)})).json()
                check(
                    r3.get("conference") == r["conference"],
                    f"the IVR looks up PIN {pin}: {r3.get('conference')}",
                )
                r4 = (await http.get("/conferenceMapper", params={"id": "1234567890"})).json()
                check(r4.get("conference") is False, "an unknown PIN answers conference=false")
                nums = (
                    await http.get("/phoneNumberList", params={"conference": f"{ROOM}@{MUC}"})
                ).json()
                check(bool(nums) and nums[0]["countryCode"] == "DE", f"dial-in numbers: {nums}")
                ok = (await http.get("/authorizephone", params={"phone": "4930901820"})).json()
                check(ok["allow"] is True, f"may a moderator call +49 30 901820? {ok}")
                bad = (await http.get("/authorizephone", params={"phone": "499001234567"})).json()
                check(bad["allow"] is False, f"may a moderator call a premium-rate number? {bad}")
            server.should_exit = True
            await task
        say(
            "demo finished: "
            + ("all answers right" if not failures else f"{failures} wrong answers")
        )
        return 0 if not failures else 1
