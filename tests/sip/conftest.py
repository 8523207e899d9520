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
def tcpdump_binary() -> str:
    return require_binary("tcpdump")


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


# --- dialbridge under test -----------------------------------------------------------------------
#
# The interop tests run dialbridge's UserAgent in the test's own event loop, so a test can both
# drive it through its public API (invite, info, bye) and assert on what it reports, while the real
# peer runs as a subprocess. `dialbridge.sip` is imported lazily: the harness self-tests in
# test_interop_harness.py must run even while the stack does not import.

SDP_ANSWER = (
    b"v=0\r\n"
    b"o=dialbridge 1 1 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=sendrecv\r\n"
)

SDP_OFFER = SDP_ANSWER.replace(
    b"m=audio 40000 RTP/AVP 0 101", b"m=audio 40002 RTP/AVP 0 8 101"
).replace(b"a=rtpmap:101", b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101")

USERS = {"alice": "secret", "bob": "hunter2", "carol": "s3cr3t"}


class DialbridgeUnderTest:
    """A dialbridge UserAgent on 127.0.0.1: UDP and TCP on `port`, TLS on `port + 1`, a registrar
    with the accounts in USERS, and a router that behaves by Request-URI user:

    * `ring...`: sends 180 and never answers (for CANCEL);
    * anything else: 180, then 200 with an answer made by `dialbridge.sip.sdp.create_answer`
      (our offer for an offerless INVITE); re-INVITEs are answered the same way.

    Every incoming call and answered dialog is recorded; `on_dialog` (if set) is started as a task
    for each answered dialog, so a test can script what dialbridge does inside the call.
    """

    def __init__(
        self,
        certificate: CertificatePair | None,
        *,
        digest_algorithms: tuple[str, ...] | None = None,
    ) -> None:
        from tests.sip.peers.ports import LOOPBACK, free_port

        self.host = LOOPBACK
        self.port = free_port(span=2)
        self.tls_port = self.port + 1
        self.certificate = certificate
        # None: the stack's default challenge list (SHA-256 then MD5, RFC 8760 §2.4)
        self.digest_algorithms = digest_algorithms
        self.incoming: list = []
        self.dialogs: list = []
        self.on_dialog = None
        self.tasks: set = set()
        self.ua = None

    def address(self, transport: str) -> str:
        return f"{self.host}:{self.tls_port if transport == 'tls' else self.port}"

    async def start(self) -> None:
        import ssl

        from dialbridge.sip.auth import DigestChallenger
        from dialbridge.sip.registrar import DigestAuthenticator
        from dialbridge.sip.security import Trunk
        from dialbridge.sip.ua import UserAgent, UserAgentConfig

        client_ssl = None
        if self.certificate is not None:
            client_ssl = ssl.create_default_context(cafile=str(self.certificate.cert))
        config = UserAgentConfig(
            udp=[(self.host, self.port)],
            tcp=[(self.host, self.port)],
            tls=[(self.host, self.tls_port)] if self.certificate else [],
            tls_cert=str(self.certificate.cert) if self.certificate else None,
            tls_key=str(self.certificate.key) if self.certificate else None,
            domain=self.host,
            users=dict(USERS),
            # SIPp calls from 127.0.0.1: a trunk recognised by source address (issue 3 §10)
            trunks=[Trunk.from_cidrs("loopback", ["127.0.0.1/32"])],
            client_ssl=client_ssl,
        )
        authenticator = None
        if self.digest_algorithms is not None:
            challenger = DigestChallenger(self.host, algorithms=self.digest_algorithms)
            authenticator = DigestAuthenticator(self.host, dict(USERS), challenger=challenger)
        self.ua = UserAgent(config, router=self._route, authenticator=authenticator)
        await self.ua.start()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.ua is not None:
            await self.ua.close()

    async def _route(self, call) -> None:
        import asyncio

        self.incoming.append(call)
        user = call.request_uri.user or ""
        await call.ring()
        if user.startswith("ring"):
            await call.cancelled
            return
        handle = await call.answer(self.sdp_for(call.offer))
        handle.on_offer = self._reoffer_answer(handle)
        self.dialogs.append(handle)
        if self.on_dialog is not None:
            task = asyncio.get_running_loop().create_task(self.on_dialog(handle))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    # SDP through the stack's own offer/answer (sip/sdp.py), so the peers' real offers are
    # answered by it: an answer to an offer, or our offer for an offerless INVITE (RFC 3264).
    def local_media(self, version: int = 1):
        from dialbridge.sip.sdp import OPUS, PCMA, PCMU, LocalMedia

        return LocalMedia(
            self.host, 40000, codecs=(PCMU, PCMA, OPUS), session_id=1, session_version=version
        )

    def sdp_for(self, offer: bytes | None, version: int = 1) -> bytes:
        from dialbridge.sip.sdp import create_answer, create_offer, parse_sdp

        if not offer:
            return create_offer(self.local_media(version)).to_bytes()
        return create_answer(parse_sdp(offer), self.local_media(version)).to_bytes()

    def _reoffer_answer(self, handle):
        versions = iter(range(2, 1000))

        def on_offer(request) -> bytes | None:
            return self.sdp_for(request.body or None, next(versions))

        return on_offer

    def lookup(self, user: str):
        import time

        return self.ua.location.lookup(user, time.time())


@pytest.fixture
async def dialbridge(tls_certificate):
    server = DialbridgeUnderTest(tls_certificate)
    await server.start()
    try:
        yield server
    finally:
        await server.close()
