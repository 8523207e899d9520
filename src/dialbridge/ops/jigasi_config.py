"""What Jigasi needs to register with dialbridge, generated from our configuration.

Every property name and value format below is a Jigasi fact from
``jigasi-protocol.md`` §7 (Debian's ``/etc/jitsi/jigasi/sip-communicator.properties`` and
``/etc/jitsi/jigasi/config``); the section is cited beside each choice.

* The account block lives under ``net.java.sip.communicator.impl.protocol.sip.<account id>.``
  (§7.2). The id only has to be unique in the file; we derive it from the AOR so that running
  the generator twice gives the same block (an edited file can be diffed, not re-keyed).
* ``PASSWORD`` is the base64 of the cleartext (§7.2 "Base64-encoded cleartext"), and so is
  ``JIGASI_SIPPWD`` in the ``config`` file (§7.1).
* Jigasi is pointed at us as a manual outbound proxy (§3.2): ``PROXY_AUTO_CONFIG=false``,
  ``PROXY_ADDRESS``/``PROXY_PORT`` and the then mandatory ``PREFERRED_TRANSPORT``.
* The header names are ours (``[jigasi]`` in dialbridge.toml), so both ends agree (§1.2).
* Translator mode on both accounts plus the silence capture device (§5.1); Opus and
  telephone-event only (§1.5, Jitsi's production choice, and translator mode needs Opus);
  OPTIONS keep-alive every 25 s (§3.2).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from dialbridge.config import Config

SIP_ACCOUNT_PREFIX = "net.java.sip.communicator.impl.protocol.sip."
# Every codec Jigasi's sample lists (§1.5); all but Opus and telephone-event are switched off.
ENCODINGS = {
    "opus/48000": 1000,
    "telephone-event/8000": 1,
    "AMR-WB/16000": 0,
    "G722/8000": 0,
    "PCMU/8000": 0,
    "PCMA/8000": 0,
    "iLBC/8000": 0,
    "speex/32000": 0,
    "speex/16000": 0,
    "speex/8000": 0,
    "SILK/24000": 0,
    "SILK/16000": 0,
    "SILK/12000": 0,
    "SILK/8000": 0,
    "GSM/8000": 0,
    "G723/8000": 0,
    "G729/8000": 0,
    "H264/90000": 0,
    "VP8/90000": 0,
    "red/90000": 0,
    "ulpfec/90000": 0,
}
KEEP_ALIVE_INTERVAL_SECONDS = 25  # the Debian sample's value (§7.2, §3.2)
JIGASI_SIP_PORT = 5070
HEARTBEAT_SECONDS = 180  # Jitsi's production value (§7.4): leaked calls end (PR #462, §8)


class JigasiConfigError(Exception):
    """Our configuration cannot produce a working Jigasi account; names the key to fix."""


@dataclass(frozen=True)
class JigasiSettings:
    account_id: str
    user_id: str  # the AOR without "sip:", user@domain
    password: str
    proxy_host: str
    proxy_port: int
    transport: str  # UDP, TCP or TLS
    meet_domain: str
    start_muted: bool
    account: list[tuple[str, str]]  # property suffix → value, under the account prefix
    globals: list[tuple[str, str]]  # full property name → value

    @property
    def prefix(self) -> str:
        return f"{SIP_ACCOUNT_PREFIX}{self.account_id}."


def encode_password(password: str) -> str:
    """Jigasi's stored form: base64 of the UTF-8 cleartext (§7.1 JIGASI_SIPPWD, §7.2 PASSWORD)."""
    return base64.b64encode(password.encode("utf-8")).decode("ascii")


def account_id(user_id: str) -> str:
    """A stable id shaped like Debian's ``acc1403273890647``: 13 digits derived from the AOR."""
    digest = hashlib.sha256(user_id.encode("utf-8")).digest()
    return "acc" + str(int.from_bytes(digest[:8], "big") % 10**13).zfill(13)


def _pick_listener(config: Config, transport: str | None) -> tuple[str, str, int]:
    sip = config.sip
    order = [transport.lower()] if transport else ["tcp", "udp", "tls"]
    for kind in order:
        listeners = sip.listeners(kind)
        if listeners:
            host, port = listeners[0]
            return kind.upper(), host, port
    raise JigasiConfigError(
        f"sip.{order[0]}: no {order[0].upper()} listener configured for Jigasi to use"
        if transport
        else "sip.udp/sip.tcp/sip.tls: no SIP listener configured"
    )


def meet_domain_from(config: Config, explicit: str | None = None) -> str:
    """The Meet domain: ``--meet-domain``, ``jigasi.domain_base``, else the first
    ``mapper.allowed_domains`` entry without its ``conference.`` label."""
    if explicit:
        return explicit
    if config.jigasi.domain_base:
        return config.jigasi.domain_base
    for domain in config.mapper.allowed_domains:
        return domain.split(".", 1)[1] if domain.startswith("conference.") else domain
    return "meet.example.com"


def jigasi_settings(
    config: Config,
    *,
    proxy_host: str | None = None,
    transport: str | None = None,
    meet_domain: str | None = None,
    start_muted: bool = False,
) -> JigasiSettings:
    j = config.jigasi
    user = next((u for u in config.users if u.name == j.user), None)
    if user is None:
        raise JigasiConfigError(
            f"jigasi.user: no [[users]] entry named {j.user!r}; add one with a password "
            "(Jigasi registers with it)"
        )
    kind, host, port = _pick_listener(config, transport)
    host = proxy_host or config.sip.advertised_host or host
    if host in ("0.0.0.0", "::", ""):
        raise JigasiConfigError(
            "sip.advertised_host: the SIP listener is a wildcard address; set advertised_host "
            "(or pass --proxy-host) to the address Jigasi should connect to"
        )
    user_id = f"{user.name}@{config.sip.domain}"
    acc = account_id(user_id)
    domain = meet_domain_from(config, meet_domain)

    account: list[tuple[str, str]] = [
        ("ACCOUNT_UID", f"SIP\\:{user_id}"),  # the colon escaped, as in the Debian sample (§7.2)
        ("USER_ID", user_id),
        ("PASSWORD", encode_password(user.password)),
        ("AUTHORIZATION_NAME", user.name),
        ("SERVER_ADDRESS", config.sip.domain),
        ("SERVER_PORT", str(port)),
        ("PROXY_AUTO_CONFIG", "false"),  # §3.2 manual proxy: us
        ("PROXY_ADDRESS", host),
        ("PROXY_PORT", str(port)),
        ("PREFERRED_TRANSPORT", kind),  # mandatory with a manual proxy (§3.2)
        ("KEEP_ALIVE_METHOD", "OPTIONS"),
        ("KEEP_ALIVE_INTERVAL", str(KEEP_ALIVE_INTERVAL_SECONDS)),
        ("VOICEMAIL_ENABLED", "false"),  # no MWI SUBSCRIBE
        ("DEFAULT_ENCRYPTION", "false"),  # plain RTP/AVP
        ("OVERRIDE_ENCODINGS", "true"),
        *((f"Encodings.{codec}", str(priority)) for codec, priority in ENCODINGS.items()),
        ("USE_TRANSLATOR_IN_CONFERENCE", "true"),  # §5.1
        ("DOMAIN_BASE", domain),
        ("JITSI_MEET_ROOM_HEADER_NAME", j.room_header),  # §1.2: both ends use our names
        ("JITSI_MEET_ROOM_PASS_HEADER_NAME", j.password_header),
        ("JITSI_MEET_DOMAIN_BASE_HEADER_NAME", j.domain_base_header),
        ("JITSI_MEET_DOMAIN_TENANT_HEADER_NAME", j.tenant_header),
        ("JITSI_MEET_ANSWER_EMPTY_INFO", "true"),
        ("HEARTBEAT_SECONDS", str(HEARTBEAT_SECONDS)),
    ]
    globals_: list[tuple[str, str]] = [
        ("org.jitsi.jigasi.xmpp.acc.USE_TRANSLATOR_IN_CONFERENCE", "true"),  # §5.1, XMPP side
        (
            "net.java.sip.communicator.impl.neomedia.audioSystem.audiosilence.captureDevice_list",
            '["AudioSilenceCaptureDevice:noTransferData"]',
        ),
        ("net.java.sip.communicator.impl.protocol.SingleCallInProgressPolicy.enabled", "false"),
        ("org.jitsi.jigasi.ENABLE_SIP_STARTMUTED", "true" if start_muted else "false"),  # §4.5
        ("org.jitsi.jigasi.HEALTH_CHECK_SIP_URI", j.health_check_user),  # §2.3
        # §1.7: Jigasi itself listens on 5060/5061; moved aside so that dialbridge can keep 5060
        # for the trunk when both run on one host (Jigasi registers its real port anyway).
        ("net.java.sip.communicator.SIP_PREFERRED_CLEAR_PORT", str(JIGASI_SIP_PORT)),
        ("net.java.sip.communicator.SIP_PREFERRED_SECURE_PORT", str(JIGASI_SIP_PORT + 1)),
    ]
    if kind == "TLS":
        # Our certificate may be self-signed on a private link (§3.2, as docker and production).
        globals_.append(("net.java.sip.communicator.service.gui.ALWAYS_TRUST_MODE_ENABLED", "true"))
        globals_.append(
            ("net.java.sip.communicator.impl.protocol.sip.FORCE_REGISTER_ON_TLS_CLOSE", "true")
        )
    return JigasiSettings(
        account_id=acc,
        user_id=user_id,
        password=user.password,
        proxy_host=host,
        proxy_port=port,
        transport=kind,
        meet_domain=domain,
        start_muted=start_muted,
        account=account,
        globals=globals_,
    )


def _escape_value(value: str) -> str:
    # java.util.Properties: a leading space and backslashes need escaping; ':' and '=' in
    # values are fine, the ACCOUNT_UID escape above follows the Debian sample.
    return value if not value.startswith(" ") else "\\" + value


def render_properties(s: JigasiSettings) -> str:
    lines = [
        "# dialbridge: Jigasi's SIP account, generated by `dialbridge jigasi-config`.",
        "# In /etc/jitsi/jigasi/sip-communicator.properties, replace the existing",
        f"# {SIP_ACCOUNT_PREFIX}acc*.* lines with these, then: systemctl restart jigasi",
        f"# Jigasi registers as {s.user_id} via {s.transport} {s.proxy_host}:{s.proxy_port}.",
    ]
    lines += [f"{s.prefix}{key}={_escape_value(value)}" for key, value in s.account]
    lines += ["", "# Global keys (replace existing lines with the same names)."]
    lines += [f"{key}={_escape_value(value)}" for key, value in s.globals]
    return "\n".join(lines) + "\n"


def render_env_file(s: JigasiSettings) -> str:
    """``/etc/jitsi/jigasi/config`` (§7.1): what the Debian package's postinst would write."""
    return (
        "# /etc/jitsi/jigasi/config, generated by `dialbridge jigasi-config`\n"
        f"JIGASI_SIPUSER={s.user_id}\n"
        f"JIGASI_SIPPWD={encode_password(s.password)}\n"
        'JIGASI_OPTS=""\n'
        f"JIGASI_HOSTNAME={s.meet_domain}\n"
        "JIGASI_HOST=localhost\n"
        "JAVA_SYS_PROPS=-Djava.util.logging.config.file=/etc/jitsi/jigasi/logging.properties\n"
    )


def parse_properties(text: str) -> dict[str, str]:
    """Read ``key=value`` lines the way java.util.Properties does for our output (tests, check)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.replace("\\:", ":").replace("\\ ", " ")
    return out
