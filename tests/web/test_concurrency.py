"""1,000 concurrent first-sight requests over 200 rooms, served by 4 OS processes sharing one
store: exactly one PIN per room, and every reverse lookup agrees."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.web.conftest import MUC

PROCESSES = 4
ROOMS = 200
REQUESTS = 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(store_url: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DIALBRIDGE_STORE__URL": store_url,
        "DIALBRIDGE_HTTP__PORT": str(port),
        "DIALBRIDGE_HTTP__HOST": "127.0.0.1",
    }
    env.pop("DIALBRIDGE_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "dialbridge.cli", "serve"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


async def _wait_healthy(port: int, proc: subprocess.Popen, deadline: float) -> None:
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "server exited during start-up"
            try:
                if (await c.get(f"http://127.0.0.1:{port}/healthz", timeout=1)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"server on port {port} not healthy in time")


@pytest.mark.slow
async def test_concurrent_first_sight_from_four_processes(store_url: str, tmp_path: Path) -> None:
    ports = [_free_port() for _ in range(PROCESSES)]
    procs: list[subprocess.Popen] = []
    try:
        for i, port in enumerate(ports):
            procs.append(_start_server(store_url, port, tmp_path / f"server{i}.log"))
        deadline = time.monotonic() + 60
        for port, proc in zip(ports, procs, strict=True):
            await _wait_healthy(port, proc, deadline)

        # Five requests per room in mixed spellings, spread round-robin over the processes.
        spellings = ("Room{}", "room{}", "ROOM{}", "RoOm{}", "rOOM{}")
        jobs = [(spellings[k % 5].format(k % ROOMS), ports[k % PROCESSES]) for k in range(REQUESTS)]
        # A connection per request: a busy machine must not turn keep-alive races into failures.
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=300, limits=limits) as client:

            async def ask(room: str, port: int) -> dict:
                r = await client.get(
                    f"http://127.0.0.1:{port}/conferenceMapper",
                    params={"conference": f"{room}@{MUC}"},
                )
                assert r.status_code == 200, r.text
                return r.json()

            started = time.monotonic()
            answers = await asyncio.gather(*(ask(room, port) for room, port in jobs))
            print(f"{REQUESTS} first-sight requests in {time.monotonic() - started:.2f} s")
            pins_by_room: dict[str, set[int]] = {}
            for answer in answers:
                pins_by_room.setdefault(answer["conference"], set()).add(answer["id"])
            assert len(pins_by_room) == ROOMS
            assert all(len(p) == 1 for p in pins_by_room.values()), {
                r: p for r, p in pins_by_room.items() if len(p) > 1
            }
            assert len({next(iter(p)) for p in pins_by_room.values()}) == ROOMS

            async def reverse(room: str, pin: int, port: int) -> None:
                r = await client.get(
                    f"http://127.0.0.1:{port}/conferenceMapper", params={"id": pin}
                )
                assert r.json()["conference"] == room

            await asyncio.gather(
                *(
                    reverse(room, next(iter(p)), ports[i % PROCESSES])
                    for i, (room, p) in enumerate(pins_by_room.items())
                )
            )

        from dialbridge.config import StoreConfig
        from dialbridge.store.db import Database
        from dialbridge.store.mappings import ConferenceMappings, MappingPolicy

        db = Database(StoreConfig(url=store_url).effective_url)
        try:
            assert await ConferenceMappings(db, MappingPolicy()).count_live() == ROOMS
        finally:
            await db.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
