"""Fixtures for the SIP interop tests (tests/sip/test_interop_*.py). Nothing here is autouse, so
the unit tests in this directory do not pay for it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

# The harness is imported as `tests.sip.peers` whether or not tests/ is a package.
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from tests.sip.peers.certs import CertificatePair, make_self_signed_certificate  # noqa: E402


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: see docs/sip-interop.md)")
    return path


@pytest.fixture
def sipp_binary() -> str:
    return require_binary("sipp")


@pytest.fixture
def baresip_binary() -> str:
    return require_binary("baresip")


@pytest.fixture
def linphonec_binary() -> str:
    return require_binary("linphonec")


@pytest.fixture
def socat_binary() -> str:
    return require_binary("socat")


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificatePair:
    require_binary("openssl")
    return make_self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def peer_dir(tmp_path: Path) -> Path:
    """Working directory for the peers of one test (traces, configs, logs)."""
    path = tmp_path / "peers"
    path.mkdir()
    return path
