"""The generated Jigasi settings, checked against the Jigasi facts of jigasi-protocol.md §7.

The expected names and values are written out here, each with the section it comes from, so a
change in the generator that drifts from what Jigasi reads fails this test."""

from __future__ import annotations

import base64

import pytest

from dialbridge.config import load_config
from dialbridge.ops.jigasi_config import (
    JigasiConfigError,
    jigasi_settings,
    parse_properties,
    render_env_file,
    render_properties,
)

PASSWORD = "s3cret-pässword"

# §7.2: the account properties live under this prefix plus an account id ("acc1403273890647"
# in the Debian sample).
ACCOUNT_PREFIX = "net.java.sip.communicator.impl.protocol.sip."


def _config(**overrides):  # noqa: ANN003, ANN202
    sections = {
        "sip": {"udp": ["0.0.0.0:5060"], "tcp": ["0.0.0.0:5070"], "advertised_host": "10.0.0.5",
                "domain": "sip.meet.example.com"},
        "users": [{"name": "jigasi", "password": PASSWORD}],
        "mapper": {"allowed_domains": ["conference.meet.example.com"]},
        "jigasi": {"room_header": "X-Room-Name", "password_header": "X-Room-Pass",
                   "domain_base_header": "X-Domain-Base", "tenant_header": "X-Domain-Tenant"},
    }  # fmt: skip
    sections.update(overrides)
    return load_config(None, **sections)


def _account(props: dict[str, str]) -> tuple[str, dict[str, str]]:
    ids = {k[len(ACCOUNT_PREFIX) :].split(".", 1)[0] for k in props if k.startswith(ACCOUNT_PREFIX)}
    ids = {i for i in ids if i.startswith("acc")}  # not global .sip.* keys (TLS ones)
    (acc,) = ids
    prefix = f"{ACCOUNT_PREFIX}{acc}."
    return acc, {k[len(prefix) :]: v for k, v in props.items() if k.startswith(prefix)}


def test_account_block_has_the_names_and_values_jigasi_reads() -> None:
    props = parse_properties(render_properties(jigasi_settings(_config())))
    acc, account = _account(props)
    assert acc.startswith("acc") and acc[3:].isdigit()
    # §7.2 ACCOUNT_UID "SIP\:<user@domain>", USER_ID the AOR, SERVER_ADDRESS the registrar.
    assert account["ACCOUNT_UID"] == "SIP:jigasi@sip.meet.example.com"
    assert account["USER_ID"] == "jigasi@sip.meet.example.com"
    assert account["SERVER_ADDRESS"] == "sip.meet.example.com"
    # §7.2 PASSWORD "Base64-encoded cleartext, decoded at start".
    assert base64.b64decode(account["PASSWORD"]).decode("utf-8") == PASSWORD
    # §3.2 manual proxy: PROXY_AUTO_CONFIG=false, PROXY_ADDRESS/PORT, PREFERRED_TRANSPORT
    # (mandatory in this mode, one of UDP/TCP/TLS).
    assert account["PROXY_AUTO_CONFIG"] == "false"
    assert account["PROXY_ADDRESS"] == "10.0.0.5"
    assert account["PROXY_PORT"] == "5070"
    assert account["PREFERRED_TRANSPORT"] == "TCP"
    # §3.2/§7.2 keep-alive: OPTIONS every 25 s.
    assert account["KEEP_ALIVE_METHOD"] == "OPTIONS"
    assert account["KEEP_ALIVE_INTERVAL"] == "25"
    # §1.2/§7.2 header-name properties carry our configured names.
    assert account["JITSI_MEET_ROOM_HEADER_NAME"] == "X-Room-Name"
    assert account["JITSI_MEET_ROOM_PASS_HEADER_NAME"] == "X-Room-Pass"
    assert account["JITSI_MEET_DOMAIN_BASE_HEADER_NAME"] == "X-Domain-Base"
    assert account["JITSI_MEET_DOMAIN_TENANT_HEADER_NAME"] == "X-Domain-Tenant"
    # §5.1 translator mode on the SIP account ...
    assert account["USE_TRANSLATOR_IN_CONFERENCE"] == "true"
    # ... and on the XMPP side, with the silence capture device.
    assert props["org.jitsi.jigasi.xmpp.acc.USE_TRANSLATOR_IN_CONFERENCE"] == "true"
    assert (
        props["net.java.sip.communicator.impl.neomedia.audioSystem.audiosilence.captureDevice_list"]
        == '["AudioSilenceCaptureDevice:noTransferData"]'
    )
    # §7.2 DEFAULT_ENCRYPTION=false: plain RTP/AVP, which is what we offer.
    assert account["DEFAULT_ENCRYPTION"] == "false"
    # §7.3 many concurrent calls need SingleCallInProgressPolicy off.
    assert (
        props["net.java.sip.communicator.impl.protocol.SingleCallInProgressPolicy.enabled"]
        == "false"
    )


def test_encodings_are_opus_and_telephone_event_only() -> None:
    props = parse_properties(render_properties(jigasi_settings(_config())))
    _, account = _account(props)
    # §1.5/§7.2: the account's list is used only with OVERRIDE_ENCODINGS=true; priority 0 = off.
    assert account["OVERRIDE_ENCODINGS"] == "true"
    encodings = {k[len("Encodings.") :]: int(v) for k, v in account.items()
                 if k.startswith("Encodings.")}  # fmt: skip
    enabled = {codec for codec, priority in encodings.items() if priority > 0}
    assert enabled == {"opus/48000", "telephone-event/8000"}
    # The Debian sample's other codecs (§1.5) are present and switched off explicitly.
    for codec in ("G722/8000", "PCMU/8000", "PCMA/8000", "iLBC/8000", "AMR-WB/16000"):
        assert encodings[codec] == 0
    assert encodings["opus/48000"] > encodings["telephone-event/8000"]


def test_start_muted_is_written_when_wanted() -> None:
    # §4.5 org.jitsi.jigasi.ENABLE_SIP_STARTMUTED, default false.
    off = parse_properties(render_properties(jigasi_settings(_config())))
    on = parse_properties(render_properties(jigasi_settings(_config(), start_muted=True)))
    assert off["org.jitsi.jigasi.ENABLE_SIP_STARTMUTED"] == "false"
    assert on["org.jitsi.jigasi.ENABLE_SIP_STARTMUTED"] == "true"


def test_account_id_is_stable_and_follows_the_account() -> None:
    a = jigasi_settings(_config()).account_id
    assert jigasi_settings(_config()).account_id == a
    other = _config(users=[{"name": "jigasi2", "password": PASSWORD}], jigasi={"user": "jigasi2"})
    assert jigasi_settings(other).account_id != a


def test_env_file_matches_the_debian_postinst() -> None:
    # §7.1: JIGASI_SIPUSER user@domain, JIGASI_SIPPWD base64, JIGASI_HOSTNAME the Meet domain.
    env = dict(
        line.split("=", 1)
        for line in render_env_file(jigasi_settings(_config())).splitlines()
        if line and not line.startswith("#")
    )
    assert env["JIGASI_SIPUSER"] == "jigasi@sip.meet.example.com"
    assert base64.b64decode(env["JIGASI_SIPPWD"]).decode() == PASSWORD
    assert env["JIGASI_HOSTNAME"] == "meet.example.com"
    assert env["JIGASI_HOST"] == "localhost"


def test_transport_choice_and_tls_trust() -> None:
    udp = jigasi_settings(_config(), transport="udp")
    assert (udp.transport, udp.proxy_port) == ("UDP", 5060)
    props = parse_properties(render_properties(udp))
    assert "net.java.sip.communicator.service.gui.ALWAYS_TRUST_MODE_ENABLED" not in props


def test_missing_jigasi_account_names_the_key() -> None:
    with pytest.raises(JigasiConfigError, match=r"^jigasi\.user: no \[\[users\]\] entry"):
        jigasi_settings(_config(users=[]))


def test_wildcard_listener_without_advertised_host_names_the_key() -> None:
    config = _config(sip={"udp": ["0.0.0.0:5060"], "domain": "sip.meet.example.com"})
    with pytest.raises(JigasiConfigError, match=r"^sip\.advertised_host"):
        jigasi_settings(config)
    assert jigasi_settings(config, proxy_host="192.0.2.7").proxy_host == "192.0.2.7"


def test_cli_prints_properties_and_env(tmp_path, capsys) -> None:  # noqa: ANN001
    from dialbridge.cli import main

    toml = tmp_path / "d.toml"
    toml.write_text(
        '[sip]\nudp = ["127.0.0.1:5060"]\ndomain = "127.0.0.1"\n'
        '[[users]]\nname = "jigasi"\npassword = "jigasi-secret"\n'
    )
    assert main(["--config", str(toml), "jigasi-config", "--start-muted"]) == 0
    out = capsys.readouterr().out
    props = parse_properties(out)
    _, account = _account(props)
    assert account["PROXY_ADDRESS"] == "127.0.0.1"
    assert account["PREFERRED_TRANSPORT"] == "UDP"
    assert "JIGASI_SIPPWD=" + base64.b64encode(b"jigasi-secret").decode() in out


def test_jigasi_listens_beside_our_5060() -> None:
    # §1.7: Jigasi listens on 5060/5061 unless SIP_PREFERRED_CLEAR_PORT/SECURE_PORT say otherwise.
    props = parse_properties(render_properties(jigasi_settings(_config())))
    assert props["net.java.sip.communicator.SIP_PREFERRED_CLEAR_PORT"] == "5070"
    assert props["net.java.sip.communicator.SIP_PREFERRED_SECURE_PORT"] == "5071"
