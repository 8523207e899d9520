"""A whole dial-in/dial-out rig on loopback: dialbridge (store, SIP UA, media, call engine)
plus the stand-ins from :mod:`dialbridge.calls.standins` (a registered Jigasi, a PSTN phone
behind a trunk address, and the dial-out carrier).

Addresses: dialbridge and Jigasi on 127.0.0.1; the trunk (PSTN side) on 127.0.0.2, so trunk
classification by source network is real.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import numpy as np
import pytest

from dialbridge.app import open_services
from dialbridge.calls.engine import open_call_engine
from dialbridge.calls.standins import SimulatedJigasi, SimulatedPhone, SimulatedTrunk
from dialbridge.config import load_config

MUC = "conference.meet.example.com"
TRUNK_HOST = "127.0.0.2"
JIGASI_PASSWORD = "jigasi-secret"


class ShortPrompts:
    """0.12 s of a distinct tone per key: calls run fast, prompts stay audible in traces."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.asked: list[str] = []

    def path(self, key: str, language: str, codec: str) -> Path:
        self.asked.append(key)
        target = self.directory / f"{key}.wav"
        if not target.exists():
            freq = 300 + (sum(map(ord, key)) % 40) * 20
            t = np.arange(int(0.12 * 8000)) / 8000
            pcm = (np.sin(2 * np.pi * freq * t) * 5000).astype(np.int16)
            with wave.open(str(target), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(pcm.tobytes())
        return target


class Rig:
    def __init__(self, services, engine, jigasi, phone, trunk, prompts) -> None:  # noqa: ANN001
        self.services = services
        self.engine = engine
        self.jigasi = jigasi
        self.phone = phone
        self.trunk = trunk
        self.prompts = prompts

    async def pin_for(self, room: str) -> str:
        mapping = await self.services.mappings.for_conference(f"{room}@{MUC}")
        return mapping.pin

    async def cdrs(self):  # noqa: ANN201
        return await self.engine.cdrs.list()


def base_sections(tmp_path: Path, trunk_port: int, **overrides) -> dict:  # noqa: ANN003
    sections = {
        "store": {"data_dir": str(tmp_path)},
        "sip": {"udp": ["127.0.0.1:0"], "domain": "127.0.0.1", "rtp_host": "127.0.0.1",
                # SIP INFO digits: hundreds of requests from the one trunk address
                "flood_rate": 1000, "flood_burst": 2000},
        "users": [{"name": "jigasi", "password": JIGASI_PASSWORD}],
        "trunks": [
            {"name": "carrier", "networks": [f"{TRUNK_HOST}/32"], "host": TRUNK_HOST,
             "port": trunk_port, "ring_timeout": 3}
        ],
        "numbers": {"entries": [{"number": "+49 30 1234567", "default": True},
                                {"number": "+1 202 555 0143"}]},
        "dialout": {"allowed_countries": ["DE", "US"]},
        "jigasi": {"answer_timeout": 3},
        "ivr": {"pin_timeout": 1.5, "password_timeout": 1.5, "max_no_input": 2},
        "limits": {"max_ivr_seconds": 30, "media_timeout_seconds": 10},
    }  # fmt: skip
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(sections.get(key), dict):
            sections[key] = {**sections[key], **value}
        else:
            sections[key] = value
    return sections


def _bounded(name: str, close):  # noqa: ANN001, ANN202
    async def run() -> None:
        try:
            await asyncio.wait_for(close(), 10)
        except TimeoutError:
            raise AssertionError(f"closing {name} took more than 10 s") from None

    return run


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator:
    async with AsyncExitStack() as stack:

        async def make(register: bool = True, **overrides) -> Rig:  # noqa: ANN003
            trunk = SimulatedTrunk(host=TRUNK_HOST)
            trunk_port = await trunk.start()
            stack.push_async_callback(_bounded("trunk", trunk.close))
            config = load_config(None, **base_sections(tmp_path, trunk_port, **overrides))
            services = await stack.enter_async_context(open_services(config))
            prompts = ShortPrompts(tmp_path)
            engine_cm = open_call_engine(config, services, prompts=prompts)
            engine = await engine_cm.__aenter__()
            stack.push_async_callback(
                _bounded("dialbridge", lambda: engine_cm.__aexit__(None, None, None))
            )
            address = engine.ua.local_addresses["udp"]
            jigasi = SimulatedJigasi(
                host="127.0.0.1", dialbridge=address, domain="127.0.0.1",
                password=JIGASI_PASSWORD, room_header=config.jigasi.room_header,
            )  # fmt: skip
            stack.push_async_callback(_bounded("jigasi", jigasi.close))
            if register:
                await jigasi.start()
            else:
                await jigasi.ua.start()
            phone = SimulatedPhone(host=TRUNK_HOST, dialbridge=address)
            await phone.start()
            stack.push_async_callback(_bounded("phone", phone.close))
            return Rig(services, engine, jigasi, phone, trunk, prompts)

        yield make
