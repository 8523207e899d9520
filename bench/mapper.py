"""Conference mapper throughput and latency with the embedded SQLite store.

Two layers, so a regression can be placed:
  repo  — ConferenceMappings called in-process (store + ORM cost only), sequential;
  http  — a real `dialbridge serve` process on 127.0.0.1, driven by an httpx client with
          CONCURRENCY requests in flight (what Meet and the IVR see).
For each: lookups by room (existing mappings) and by PIN, printing requests/s, p50 and p99.

    .venv/bin/python bench/mapper.py [--rooms 500] [--requests 3000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MUC = "conference.meet.example.com"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(layer: str, what: str, latencies: list[float], elapsed: float) -> None:
    print(
        f"{layer:<5} {what:<16} {len(latencies) / elapsed:8.0f} req/s   "
        f"p50 {percentile(latencies, 0.5) * 1000:7.2f} ms   p99 {percentile(latencies, 0.99) * 1000:7.2f} ms"
    )


async def bench_repo(rooms: int, requests: int, data_dir: Path) -> None:
    from dialbridge.config import StoreConfig
    from dialbridge.store.db import Database
    from dialbridge.store.mappings import ConferenceMappings, MappingPolicy

    db = Database(StoreConfig(data_dir=data_dir / "repo").effective_url)
    await db.migrate()
    repo = ConferenceMappings(db, MappingPolicy())
    names = [f"room{i}@{MUC}" for i in range(rooms)]
    started = time.perf_counter()
    pins = [(await repo.for_conference(n)).pin for n in names]
    print(
        f"repo  create           {rooms / (time.perf_counter() - started):8.0f} req/s   ({rooms} new rooms)"
    )
    for what, keys, call in (
        ("lookup by room", names, repo.for_conference),
        ("lookup by PIN", pins, repo.for_pin),
    ):
        latencies = []
        started = time.perf_counter()
        for _ in range(requests):
            t = time.perf_counter()
            await call(random.choice(keys))
            latencies.append(time.perf_counter() - t)
        report("repo", what, latencies, time.perf_counter() - started)
    await db.close()


async def _worker(
    client: httpx.AsyncClient, param: str, queue: list, latencies: list[float]
) -> None:
    while queue:
        key = queue.pop()
        t = time.perf_counter()
        r = await client.get("/conferenceMapper", params={param: key})
        latencies.append(time.perf_counter() - t)
        assert r.status_code == 200 and r.json()["conference"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def bench_http(rooms: int, requests: int, concurrency: int, data_dir: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DIALBRIDGE_STORE__DATA_DIR": str(data_dir / "http"),
        "DIALBRIDGE_HTTP__PORT": str(port),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "dialbridge.cli", "serve"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=base, timeout=30, limits=httpx.Limits(max_connections=concurrency)
        ) as c:
            for _ in range(300):
                try:
                    if (await c.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            names = [f"Room{i}@{MUC}" for i in range(rooms)]
            pins = []
            for n in names:
                pins.append(
                    (await c.get("/conferenceMapper", params={"conference": n})).json()["id"]
                )
            for what, param, keys in (
                ("lookup by room", "conference", names),
                ("lookup by PIN", "id", pins),
            ):
                queue = [random.choice(keys) for _ in range(requests)]
                latencies: list[float] = []
                started = time.perf_counter()
                await asyncio.gather(
                    *(_worker(c, param, queue, latencies) for _ in range(concurrency))
                )
                report("http", what, latencies, time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=500)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    random.seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench_repo(args.rooms, args.requests, Path(tmp)))
        asyncio.run(bench_http(args.rooms, args.requests, args.concurrency, Path(tmp)))
    print(
        f"(cpu count {os.cpu_count()}, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())})"
    )


if __name__ == "__main__":
    main()
