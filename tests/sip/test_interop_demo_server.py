"""linphonec against the standalone server, `python -m dialbridge.sip.demo_server`, run as its own
process (uvloop, CLI, control socket): the whole process path, not only the UserAgent API.
linphonec registers with digest (challenged with SHA-256, then MD5), the control
socket's `call carol` makes the server INVITE it over the registration flow, and linphonec's log
shows where that INVITE came from."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.sip.peers.linphonec import Linphonec, LinphonecConfig
from tests.sip.peers.ports import LOOPBACK, free_port
from tests.sip.peers.process import PeerProcess

pytestmark = [pytest.mark.peers, pytest.mark.slow]


async def control(port: int, line: str) -> str:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(line.encode() + b"\n")
    await writer.drain()
    reply = await asyncio.wait_for(reader.readline(), 15)
    writer.close()
    return reply.decode().strip()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_demo_server_calls_registered_linphonec_from_its_registrar_port(
    linphonec_binary, peer_dir, transport
):
    port, control_port = free_port(), free_port()
    server = PeerProcess(
        [
            sys.executable, "-m", "dialbridge.sip.demo_server",
            f"--{transport}", f"{LOOPBACK}:{port}", "--user", "carol:s3cr3t",
            "--domain", LOOPBACK, "--control", f"{LOOPBACK}:{control_port}", "--ring",
            "--digest-algorithms", "SHA-256,MD5",
        ],
        log_path=peer_dir / "demo_server.log",
    )  # fmt: skip
    await server.start()
    phone = Linphonec(LinphonecConfig(peer_dir / "linphonec", transport=transport))
    try:
        await server.wait_for(r"EVENT ready", 15)
        await phone.start()
        await phone.register("carol", f"{LOOPBACK}:{port}", "s3cr3t")
        registered = await server.wait_for(
            r"EVENT registered aor=sip:carol@\S+ contact=\S+ flow=(\S+)", 10
        )
        reply = await control(control_port, "call carol 1")
        await server.wait_for(r"EVENT ended call_id=\S+ reason=\S+", 10)
    finally:
        await phone.quit()
        await server.stop()
    assert reply == "OK 200"
    flow = registered.group(1)
    assert flow.startswith(f"{transport}:{LOOPBACK}:{port}->")
    invites = [m for m in phone.messages() if m.method == "INVITE" and m.direction == "received"]
    assert len(invites) == 1
    assert invites[0].src == (LOOPBACK, port)
    assert invites[0].transport == transport.upper()
    registers = [m for m in phone.messages() if m.method == "REGISTER"]
    assert "algorithm=SHA-256" in (registers[1].header("Authorization") or "").replace('"', "")
    out_response = await server.wait_for(
        r"EVENT call-out-response call_id=\S+ status=200 via=(\S+)", 1
    )
    assert f":{port}->" in out_response.group(1)
