"""TLS for SIPp, whose Debian build has none ("To use a TLS transport you must compile SIPp with
OpenSSL", measured with sip-tester 3.6.1): socat (OpenSSL) carries SIPp's TCP over real TLS.

    SIPp -t t1  --TCP-->  TlsClientTunnel  --TLS-->  dialbridge TLS listener
    dialbridge  --TLS-->  TlsServerTunnel  --TCP-->  SIPp's TCP port

The client side verifies the server certificate against the self-signed certificate (it is its
own CA), so a dialbridge that served the wrong certificate would fail the handshake. `fork` makes
socat accept any number of connections, each with its own TLS session.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from .ports import LOOPBACK, free_port
from .process import PeerProcess

SOCAT = shutil.which("socat")


class _Tunnel(PeerProcess):
    listen_port: int

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline:
            try:
                _, writer = await asyncio.open_connection(LOOPBACK, self.listen_port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            # a bare connect/close: socat logs it (and for the client tunnel, abandons the TLS leg)
            writer.close()
            return
        raise TimeoutError(f"socat did not listen on {self.listen_port}:\n{self.output}")


class TlsClientTunnel(_Tunnel):
    """Plain TCP in on `listen_port`, TLS out to `target_port` (certificate verified)."""

    def __init__(
        self, target_port: int, ca_file: Path, workdir: Path, listen_port: int | None = None
    ) -> None:
        if SOCAT is None:
            raise RuntimeError("socat not installed (Debian package socat)")
        self.listen_port = listen_port or free_port()
        self.target_port = target_port
        super().__init__(
            [
                SOCAT, "-d", "-d",
                f"TCP-LISTEN:{self.listen_port},bind={LOOPBACK},reuseaddr,fork",
                f"OPENSSL:{LOOPBACK}:{target_port},cafile={ca_file},verify=1,commonname=localhost",
            ],
            log_path=workdir / f"socat-client-{self.listen_port}.log",
        )  # fmt: skip


class TlsServerTunnel(_Tunnel):
    """TLS in on `listen_port` (serving `cert`), plain TCP out to `target_port`."""

    def __init__(
        self, target_port: int, combined_pem: Path, workdir: Path, listen_port: int | None = None
    ) -> None:
        if SOCAT is None:
            raise RuntimeError("socat not installed (Debian package socat)")
        self.listen_port = listen_port or free_port()
        self.target_port = target_port
        super().__init__(
            [
                SOCAT, "-d", "-d",
                f"OPENSSL-LISTEN:{self.listen_port},bind={LOOPBACK},reuseaddr,fork,cert={combined_pem},verify=0",
                f"TCP:{LOOPBACK}:{target_port}",
            ],
            log_path=workdir / f"socat-server-{self.listen_port}.log",
        )  # fmt: skip
