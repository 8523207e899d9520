"""A whole dialbridge on loopback for the operations tests: store, SIP UA, media and call engine,
the HTTP app (Meet services, /metrics, /admin) served by uvicorn on a free port, and the call
engine's stand-ins (a registered Jigasi, a PSTN phone behind the trunk address, the carrier).

The trunk side lives on 127.0.0.2 so that trunk recognition by source network is real.
"""

from __future__ import annotations

import asyncio
import socket
import wave
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from dialbridge.app import open_services
from dialbridge.calls.engine import open_call_engine
from dialbridge.calls.standins import SimulatedJigasi, SimulatedPhone, SimulatedTrunk, wait_for
from dialbridge.config import load_config
from dialbridge.web import create_http_app

MUC = "conference.meet.example.com"
TRUNK_HOST = "127.0.0.2"
JIGASI_PASSWORD = "jigasi-secret"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
DID = "+493012345670"


class TonePrompts:
    """0.1 s of a tone per prompt key: IVR steps take milliseconds, not spoken seconds."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.asked: list[str] = []

    def path(self, key: str, language: str, codec: str | None = None) -> Path:
        self.asked.append(key)
        target = self.directory / f"{key}.wav"
        if not target.exists():
            t = np.arange(800) / 8000
            pcm = (np.sin(2 * np.pi * (400 + len(key) * 20) * t) * 4000).astype(np.int16)
            with wave.open(str(target), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(pcm.tobytes())
        return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveDialbridge:
    config: Any
    services: Any
    engine: Any
    jigasi: SimulatedJigasi
    phone: SimulatedPhone
    trunk: SimulatedTrunk
    base_url: str
    http: httpx.AsyncClient

    async def pin_for(self, room: str) -> str:
        return (await self.services.mappings.for_conference(f"{room}@{MUC}")).pin

    async def dial_in(self, room: str = "weekly", caller: str = "+4930123456712") -> Any:
        """A phone call that types the room's PIN and no password; returns once bridged."""
        pin = await self.pin_for(room)
        call = await self.phone.dial(DID, caller=caller)
        await call.answered()
        await asyncio.sleep(0.2)
        await call.keys(f"{pin}#")
        await asyncio.sleep(0.2)
        await call.keys("#")
        bridged = await wait_for(lambda: any(c.bridged_at for c in self.engine.calls.values()), 10)
        assert bridged, "the call did not reach the bridged state"
        return call

    async def scrape(self) -> str:
        response = await self.http.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text


@asynccontextmanager
async def live_dialbridge(tmp_path: Path, **overrides: Any) -> AsyncIterator[LiveDialbridge]:
    import uvicorn

    async with AsyncExitStack() as stack:
        trunk = SimulatedTrunk(host=TRUNK_HOST)
        trunk_port = await trunk.start()
        stack.push_async_callback(trunk.close)
        port = _free_port()
        sections: dict[str, Any] = {
            "http": {"host": "127.0.0.1", "port": port},
            "store": {"data_dir": str(tmp_path)},
            "sip": {"udp": ["127.0.0.1:0"], "domain": "127.0.0.1", "rtp_host": "127.0.0.1"},
            "users": [{"name": "jigasi", "password": JIGASI_PASSWORD}],
            "trunks": [{"name": "carrier", "networks": [f"{TRUNK_HOST}/32"], "host": TRUNK_HOST,
                        "port": trunk_port, "ring_timeout": 3}],
            "numbers": {"entries": [{"number": "+49 30 1234567", "default": True},
                                    {"number": "+1 202 555 0143", "language": "en"}]},
            "dialout": {"allowed_countries": ["DE", "US"]},
            "jigasi": {"answer_timeout": 3},
            "ivr": {"pin_timeout": 3, "password_timeout": 3},
            "limits": {"max_ivr_seconds": 30, "media_timeout_seconds": 30},
            "admin": {"token": ADMIN_TOKEN},
        }  # fmt: skip
        sections.update(overrides)
        config = load_config(None, **sections)
        services = await stack.enter_async_context(open_services(config))
        engine = await stack.enter_async_context(
            open_call_engine(config, services, prompts=TonePrompts(tmp_path))
        )
        server = uvicorn.Server(
            uvicorn.Config(create_http_app(services, call_engine=engine), host="127.0.0.1",
                           port=port, log_level="warning", lifespan="off")
        )  # fmt: skip
        serving = asyncio.ensure_future(server.serve())

        async def stop_server() -> None:
            server.should_exit = True
            await asyncio.wait_for(serving, 10)

        stack.push_async_callback(stop_server)
        assert await wait_for(lambda: server.started, 10), "uvicorn did not start"
        address = engine.ua.local_addresses["udp"]
        jigasi = SimulatedJigasi(host="127.0.0.1", dialbridge=address, domain="127.0.0.1",
                                 password=JIGASI_PASSWORD)  # fmt: skip
        stack.push_async_callback(jigasi.close)
        await jigasi.start()
        phone = SimulatedPhone(host=TRUNK_HOST, dialbridge=address)
        await phone.start()
        stack.push_async_callback(phone.close)
        base_url = f"http://127.0.0.1:{port}"
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=10))
        yield LiveDialbridge(config, services, engine, jigasi, phone, trunk, base_url, http)
