"""``dialbridge serve`` runs SIP, media and HTTP in one process and one event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx

from dialbridge.calls.standins import SimulatedJigasi
from tests.sip.peers.ports import free_port


async def test_serve_answers_sip_registers_jigasi_and_serves_http(tmp_path: Path) -> None:
    sip_port, http_port = free_port(), free_port()
    config = tmp_path / "dialbridge.toml"
    config.write_text(
        f"""
[http]
host = "127.0.0.1"
port = {http_port}
[store]
data_dir = "{tmp_path}"
[sip]
udp = ["127.0.0.1:{sip_port}"]
domain = "127.0.0.1"
[[users]]
name = "jigasi"
password = "serve-test-secret"
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALBRIDGE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dialbridge.cli", "--config", str(config), "serve",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    jigasi = SimulatedJigasi(host="127.0.0.1", dialbridge=("127.0.0.1", sip_port),
                             domain="127.0.0.1", password="serve-test-secret")  # fmt: skip
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"http://127.0.0.1:{http_port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("HTTP did not come up")
        await jigasi.start()  # REGISTER with digest against the served registrar
        response = await jigasi.ua.request("OPTIONS", f"sip:127.0.0.1:{sip_port}")
        assert response.status == 200
    finally:
        await jigasi.close()
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
