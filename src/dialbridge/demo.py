"""``dialbridge demo``: dialbridge on embedded defaults, exercised the way Meet uses it.

It starts the real services on 127.0.0.1 (a temporary SQLite store, one German dial-in
number, dial-out allowed to Germany): HTTP, the SIP user agent, the media engine and the call
engine. Then it plays Meet's part: ask the mapper for a room's PIN, look the PIN up as the IVR
will, fetch the number list, and ask whether two numbers may be called. Then the phone part,
with stand-ins built from our own SIP and media modules (:mod:`dialbridge.calls.standins`):

* a simulated Jigasi registers with digest, answers the calls it gets and echoes their audio;
* a simulated PSTN caller, arriving from the trunk's address, dials the DID, listens to the
  spoken prompts, keys the PIN and # as RFC 4733 events, and hears its own tone come back
  through the meeting;
* Jigasi dials out to a German number; the simulated carrier sees our German DID as the
  caller ID and answers; a premium-rate number is refused.

It prints each step with its timing and exits 0 when every step went right.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from pathlib import Path

import httpx

from dialbridge.calls.standins import SimulatedJigasi, SimulatedPhone, SimulatedTrunk, wait_for
from dialbridge.config import load_config
from dialbridge.rooms import parse_conference

ROOM = "Café Weekly"
MUC = "conference.meet.example.com"
TRUNK_HOST = "127.0.0.2"  # the carrier's address: calls from it are dial-ins
JIGASI_PASSWORD = "demo-jigasi-secret"
DID = "+49301234567"
CALLER = "+4930987654312"


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
        trunk = SimulatedTrunk(host=TRUNK_HOST)
        trunk_port = await trunk.start()
        config = load_config(
            None,
            http={"host": "127.0.0.1", "port": port},
            store={"data_dir": str(Path(tmp))},
            mapper={"allowed_domains": [MUC]},
            numbers={"entries": [{"number": "+49 30 1234567", "default": True}]},
            dialout={"allowed_countries": ["DE"]},
            sip={"udp": ["127.0.0.1:0"], "domain": "127.0.0.1", "rtp_host": "127.0.0.1"},
            users=[{"name": "jigasi", "password": JIGASI_PASSWORD}],
            trunks=[
                {"name": "carrier", "networks": [f"{TRUNK_HOST}/32"], "host": TRUNK_HOST,
                 "port": trunk_port}
            ],
        )  # fmt: skip

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
            await _phone_calls(config, services, trunk, say, check)
            server.should_exit = True
            await task
        say(
            "demo finished: "
            + ("all answers right" if not failures else f"{failures} wrong answers")
        )
        return 0 if not failures else 1


async def _phone_calls(config, services, trunk, say, ok) -> None:  # noqa: ANN001
    """The SIP part of the story; ``ok(good, text)`` reports each step."""
    from dialbridge.calls.engine import open_call_engine

    jigasi = phone = None
    async with open_call_engine(config, services) as engine:
        services.calls = engine
        address = engine.ua.local_addresses["udp"]
        say(f"dialbridge SIP on udp:{address[0]}:{address[1]}, carrier stand-in on {TRUNK_HOST}")
        engine.prompts.path("enter_pin", "en", "PCMA")  # render the first prompt now
        try:
            jigasi = SimulatedJigasi(host="127.0.0.1", dialbridge=address, domain="127.0.0.1",
                                     password=JIGASI_PASSWORD)  # fmt: skip
            await jigasi.start()
            ok(bool(engine.jigasi_contacts()), "simulated Jigasi registered with digest")
            phone = SimulatedPhone(host=TRUNK_HOST, dialbridge=address)
            await phone.start()
            jid = parse_conference(f"{ROOM}@{MUC}").jid  # as Meet's mapper request stored it
            pin = (await services.mappings.for_conference(jid)).pin

            # -- dial-in ----------------------------------------------------------------------
            call = await phone.dial(DID, caller=CALLER)
            await call.answered()
            say(f"phone {CALLER} dialled {DID}: answered, hears 'please enter the meeting PIN'")
            await asyncio.sleep(1.0)
            await call.keys(f"{pin}#")
            say(f"phone keyed {pin}# (RFC 4733)")
            await asyncio.sleep(1.0)
            await call.keys("#")
            say("phone keyed # (no password); hears 'connecting', then ringback")
            got = await wait_for(lambda: jigasi.invites, 20)
            invite = jigasi.invites[0] if got else None
            room = invite.headers.get("Jitsi-Conference-Room") if invite else None
            ok(room is not None and room.startswith("caf%c3%a9%20weekly@"),
               f"Jigasi got INVITE with Jitsi-Conference-Room: {room}")  # fmt: skip
            ok(invite is not None and "\u2022" in invite.from_header and CALLER not in
               invite.from_header, f"caller shown masked: {invite.from_header if invite else None}")  # fmt: skip
            ok(
                invite is not None and invite.source == address,
                "the INVITE came from the registrar's address and port",
            )
            answered = await wait_for(lambda: jigasi.dialogs, 10)
            say("Jigasi answered (the conference started): caller and meeting bridged")
            heard = await wait_for(lambda: call.rtp.tone_frames > 50, 10)
            ok(answered and heard and jigasi.audio_packets_received > 50,
               f"audio both ways: Jigasi got {jigasi.audio_packets_received} packets and echoed "
               f"them; the phone heard its own 1 kHz tone back in {call.rtp.tone_frames} frames")  # fmt: skip
            await call.hangup()
            await wait_for(lambda: not engine.calls, 5)
            cdrs = await engine.cdrs.list(limit=1)
            cdr = cdrs[0] if cdrs else None
            ok(cdr is not None and cdr.room == room,
               f"CDR: {cdr.direction} {cdr.caller} → {cdr.room}, bridged {cdr.duration:.1f} s, "
               f"ended by {cdr.hangup_side}" if cdr else "no CDR")  # fmt: skip

            # -- dial-out ---------------------------------------------------------------------
            outgoing, _ = await jigasi.dial_out("+4930901820", f"{ROOM}@{MUC}")
            final = await asyncio.wait_for(asyncio.shield(outgoing.final), 10)
            tinvite = trunk.invites[0] if trunk.invites else None
            ok(final.status == 200 and tinvite is not None and f"<sip:{DID}@" in
               tinvite.from_header, f"Jigasi dialled +49 30 901820: the carrier got "
               f"{tinvite.request_uri if tinvite else None} from {tinvite.from_header if tinvite else None}, "
               f"answered {final.status}")  # fmt: skip
            if outgoing.dialog is not None:
                await outgoing.dialog.bye()
            refused, _ = await jigasi.dial_out("+499001234567", f"{ROOM}@{MUC}")
            final = await asyncio.wait_for(asyncio.shield(refused.final), 10)
            ok(final.status == 403 and len(trunk.invites) == 1,
               f"Jigasi dialled a premium-rate number: {final.status} "
               f"({final.headers.get('Reason')}), no call to the carrier")  # fmt: skip
            await wait_for(lambda: not engine.calls, 5)
        except Exception as exc:  # the demo reports, it does not crash
            ok(False, f"phone part stopped: {exc!r}")
        finally:
            for peer in (phone, jigasi, trunk):
                if peer is not None:
                    await peer.close()
            services.calls = None
