"""``dialbridge check``: the generated config passes; a broken key, a taken port, a mismatched
certificate and key, an unreachable store are each reported with the exact key."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from dialbridge.app import open_services
from dialbridge.cli import main
from dialbridge.config import load_config
from dialbridge.ops.check import check_store, check_tls, exit_status, head_revision


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Keep the store out of /var/lib and the listeners on ports nothing else holds.
    monkeypatch.setenv("DIALBRIDGE_STORE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DIALBRIDGE_HTTP__PORT", str(_free_port()))
    monkeypatch.setenv("DIALBRIDGE_SIP__UDP", f'["127.0.0.1:{_free_port(socket.SOCK_DGRAM)}"]')
    monkeypatch.delenv("DIALBRIDGE_CONFIG", raising=False)
    return tmp_path


def test_init_then_check_passes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = env / "dialbridge.toml"
    assert main(["init", str(target)]) == 0
    capsys.readouterr()
    assert main(["--config", str(target), "check", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "ERROR" not in out
    assert "ok    http.port" in out and "ok    store.data_dir" in out
    assert "0 errors" in out


def test_broken_key_is_named(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = env / "dialbridge.toml"
    target.write_text("[mapper]\npin_length = 4\n")
    assert main(["--config", str(target), "check"]) == 1
    out = capsys.readouterr().out
    assert "config key mapper.pin_length" in out and "ERROR" in out


def test_unknown_key_is_named(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = env / "dialbridge.toml"
    target.write_text('[jigasi]\nroom_heder = "X-Room-Name"\n')
    assert main(["--config", str(target), "check"]) == 1
    assert "config key jigasi.room_heder: unknown key" in capsys.readouterr().out


def test_port_in_use_is_an_error_naming_the_listener(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("DIALBRIDGE_HTTP__PORT", str(busy.getsockname()[1]))
        assert main(["check", "--skip-prompts"]) == 1
    out = capsys.readouterr().out
    assert "ERROR http.port: TCP 127.0.0.1:" in out and "in use" in out


def test_sip_address_not_on_this_host_is_named(env: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DIALBRIDGE_SIP__UDP", '["192.0.2.1:5060"]')  # TEST-NET-1, never local
    assert main(["check", "--skip-prompts"]) == 1
    assert "ERROR sip.udp.0: UDP 192.0.2.1:5060: 192.0.2.1 is not an address of this host" in (
        capsys.readouterr().out
    )


def _keypair(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_certificate_and_key_must_match(tmp_path: Path) -> None:
    cert_a, key_a = _keypair(tmp_path, "a")
    _, key_b = _keypair(tmp_path, "b")
    good = load_config(None, sip={"tls": ["127.0.0.1:0"], "tls_cert": str(cert_a),
                                  "tls_key": str(key_a)})  # fmt: skip
    findings = check_tls(good)
    assert exit_status(findings) == 0 and "match" in findings[0].message
    bad = load_config(None, sip={"tls": ["127.0.0.1:0"], "tls_cert": str(cert_a),
                                 "tls_key": str(key_b)})  # fmt: skip
    (finding,) = check_tls(bad)
    assert (finding.level, finding.key) == ("error", "sip.tls_key")
    missing = load_config(None, sip={"tls": ["127.0.0.1:0"], "tls_cert": str(tmp_path / "no.crt"),
                                     "tls_key": str(key_a)})  # fmt: skip
    assert [(f.level, f.key) for f in check_tls(missing)] == [("error", "sip.tls_cert")]


def test_certificate_near_expiry_is_a_warning(tmp_path: Path) -> None:
    cert, key = _keypair(tmp_path, "c")  # valid 30 days
    config = load_config(None, sip={"tls": ["127.0.0.1:0"], "tls_cert": str(cert),
                                    "tls_key": str(key)})  # fmt: skip
    import time

    later = check_tls(config, now=time.time() + 20 * 86400)
    assert [(f.level, f.key) for f in later][-1] == ("warning", "sip.tls_cert")
    expired = check_tls(config, now=time.time() + 40 * 86400)
    assert [(f.level, f.key) for f in expired][-1] == ("error", "sip.tls_cert")


async def test_store_fresh_then_migrated(tmp_path: Path, store_url: str) -> None:
    if store_url.startswith("sqlite"):
        config = load_config(None, store={"data_dir": str(tmp_path)})
        expected_fresh = "will be created"
    else:
        config = load_config(None, store={"url": store_url})
        expected_fresh = "reachable and empty"
    (fresh,) = await check_store(config)
    assert fresh.level == "ok" and expected_fresh in fresh.message
    async with open_services(config):
        pass
    (migrated,) = await check_store(config)
    assert migrated.level == "ok" and head_revision() in migrated.message


async def test_store_unreachable_names_the_url() -> None:
    down = load_config(None, store={"url": "postgresql://nobody:x@127.0.0.1:1/none"})
    (finding,) = await check_store(down)
    assert (finding.level, finding.key) == ("error", "store.url")
    assert "unreachable" in finding.message


def test_prompt_renderability_is_checked(env: Path, capsys) -> None:  # noqa: ANN001
    assert main(["check", "--skip-ports", "--verbose"]) == 0
    out = capsys.readouterr().out
    # Nothing rendered in the fresh data dir yet: said as a warning, and rendering was proven.
    assert "warn  ivr.prompt_dir:" in out and "not rendered yet" in out
    assert "rendering a" not in out


def test_custom_scenario_that_cannot_be_imported_is_named() -> None:
    from dialbridge.ops.check import check_config

    config = load_config(None, routes=[
        {"source": "trunk", "scenario": "no_such_module_xyz:run"},
        {"source": "user", "scenario": "dialbridge.calls.scenarios.dial_in:dial_in"},
        {"source": "any", "scenario": "json:dumps"},
    ])  # fmt: skip
    problems = {(f.key, f.level) for f in check_config(config) if f.key.startswith("routes.")}
    assert problems == {("routes.0.scenario", "error"), ("routes.2.scenario", "error")}


def test_a_number_in_a_language_without_prompts_is_named() -> None:
    from dialbridge.ops.check import check_prompts

    config = load_config(None, numbers={"entries": [
        {"number": "+49 30 1234567", "language": "de"},
        {"number": "+33 1 23 45 67 89", "language": "xx"},
    ]})  # fmt: skip
    errors = [(f.key, f.level) for f in check_prompts(config) if f.level == "error"]
    assert errors == [("numbers.entries.1.language", "error")]
