"""The systemd unit: it verifies, its sandbox scores well, and what it tells dialbridge (the
command line and the environment) is something dialbridge understands."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dialbridge.cli import build_parser
from dialbridge.config import load_config

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "dialbridge.service"
ANALYZE = shutil.which("systemd-analyze")


def _directives(text: str) -> list[tuple[str, str]]:
    return [
        tuple(part.strip() for part in line.split("=", 1))  # type: ignore[misc]
        for line in text.splitlines()
        if "=" in line and not line.lstrip().startswith(("#", ";"))
    ]


def test_unit_runs_serve_with_settings_dialbridge_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    directives = _directives(UNIT.read_text())
    (exec_start,) = [v for k, v in directives if k == "ExecStart"]
    argv = shlex.split(exec_start)
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve" and args.config == "/etc/dialbridge/dialbridge.toml"
    for key, value in directives:
        if key == "Environment" and value.startswith("DIALBRIDGE_"):
            name, _, setting = value.partition("=")
            monkeypatch.setenv(name, setting)
    assert str(load_config(None).store.data_dir) == "/var/lib/dialbridge"
    names = dict(directives)
    # The sandbox the issue asks for.
    assert names["ProtectSystem"] == "strict" and names["NoNewPrivileges"] == "yes"
    assert names["StateDirectory"] == "dialbridge"
    assert names["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_unit_verifies_and_its_exposure_is_low(tmp_path: Path) -> None:
    # Point ExecStart at this venv's dialbridge so that verify can check it is executable.
    exe = Path(sys.executable).with_name("dialbridge")
    unit = tmp_path / "dialbridge.service"
    unit.write_text(UNIT.read_text().replace("/opt/dialbridge/.venv/bin/dialbridge", str(exe)))
    verify = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run([ANALYZE, "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True)  # fmt: skip
    m = re.search(r"Overall exposure level for dialbridge\.service: (\d+\.\d+)", security.stdout)
    assert m, security.stdout[-500:] + security.stderr
    assert float(m.group(1)) <= 2.0
