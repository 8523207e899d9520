"""Self-signed TLS certificate for 127.0.0.1 / localhost, made with the `openssl` CLI.

The certificate carries both names as subjectAltName (RFC 5922 §7.1 wants the SAN checked), so
a peer that verifies against it as a CA accepts `sip:...@127.0.0.1;transport=tls` and
`sips:...@localhost`.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CertificatePair:
    cert: Path
    key: Path
    # cert and key concatenated: the form baresip's `sip_certificate` wants.
    combined: Path


def make_self_signed_certificate(
    directory: Path, common_name: str = "localhost"
) -> CertificatePair:
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl CLI not found")
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / "cert.pem"
    key = directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", f"/CN={common_name}",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    combined = directory / "combined.pem"
    combined.write_text(cert.read_text() + key.read_text())
    return CertificatePair(cert=cert, key=key, combined=combined)
